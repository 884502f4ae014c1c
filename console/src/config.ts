// Where the console finds the API and its identity provider: `/config.json`, read once at start,
// so one build serves every stage (the deployment writes the file beside the assets; locally the
// dev and preview servers answer it from their environment, see vite.config.ts).

export interface OidcConfig {
  /** The issuer the API trusts (its AUTH__JWT_ISSUER). */
  authority: string;
  clientId: string;
  scope: string;
  /** Added to the authorization request: how the provider is asked for a token whose audience
   * is the API (`resource` per RFC 8707; Auth0 calls it `audience`). */
  extraQueryParams: Record<string, string>;
}

export interface ConsoleConfig {
  /** The API's origin ("" when the page's own origin serves /api, as locally). */
  apiBase: string;
  /** OpenID Connect sign-in; null: paste a token. */
  oidc: OidcConfig | null;
}

const DEFAULTS: ConsoleConfig = { apiBase: "", oidc: null };
let current: ConsoleConfig = DEFAULTS;

function origin(value: unknown, name: string): string {
  if (typeof value !== "string" || !value) throw new Error(`${name} must be a URL`);
  const url = new URL(value);
  const local = url.hostname === "127.0.0.1" || url.hostname === "localhost";
  if (url.protocol !== "https:" && !(local && url.protocol === "http:")) {
    throw new Error(`${name} must be https (http only on loopback), got ${value}`);
  }
  return value.replace(/\/+$/, "");
}

/** Reads `/config.json`'s document, or says in one line what is wrong with it. */
export function parseConfig(raw: unknown): ConsoleConfig | string {
  try {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new Error("not a JSON object");
    const doc = raw as Record<string, unknown>;
    const apiBase = doc["api_base"] ? origin(doc["api_base"], "api_base") : "";
    const o = doc["oidc"];
    if (o === undefined || o === null) return { apiBase, oidc: null };
    if (typeof o !== "object") throw new Error("oidc must be an object");
    const oidc = o as Record<string, unknown>;
    const clientId = oidc["client_id"];
    if (typeof clientId !== "string" || !clientId) throw new Error("oidc.client_id is required");
    const scope = typeof oidc["scope"] === "string" && oidc["scope"] ? oidc["scope"] : "openid";
    const extra: unknown = oidc["extra_query_params"] ?? {};
    if (typeof extra !== "object" || extra === null || Array.isArray(extra)) {
      throw new Error("oidc.extra_query_params must be an object of strings");
    }
    const extraQueryParams: Record<string, string> = {};
    for (const [k, v] of Object.entries(extra as Record<string, unknown>)) {
      if (typeof v !== "string") throw new Error(`oidc.extra_query_params.${k} must be a string`);
      extraQueryParams[k] = v;
    }
    const authority = origin(oidc["authority"], "oidc.authority");
    return { apiBase, oidc: { authority, clientId, scope, extraQueryParams } };
  } catch (e) {
    return `config.json: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/** Loads the configuration; no file means the defaults (same-origin API, pasted tokens). */
export async function loadConfig(): Promise<ConsoleConfig | string> {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (response.status === 404) return DEFAULTS;
  if (!response.ok || !response.headers.get("content-type")?.includes("json")) {
    return `config.json: answered ${response.status}`;
  }
  const config = parseConfig(await response.json());
  if (typeof config !== "string") current = config;
  return config;
}

export function config(): ConsoleConfig {
  return current;
}

/** The API's base URL for a path under /api. */
export function apiUrl(path: string): string {
  return `${current.apiBase}${path}`;
}
