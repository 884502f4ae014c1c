// Where the console finds the API and its identity provider: `/config.json`, read once at start,
// so one build serves every stage (the deployment writes the file beside the assets; locally the
// dev and preview servers answer it from their environment, see vite.config.ts).

export interface OidcConfig {
  /** The issuer the API trusts (its AUTH__JWT_ISSUER). */
  authority: string;
  clientId: string;
  scope: string;
  /** The API's audience, asked for as a resource indicator (RFC 8707), when the provider needs one. */
  resource: string | null;
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
    const resource = typeof oidc["resource"] === "string" && oidc["resource"] ? oidc["resource"] : null;
    return { apiBase, oidc: { authority: origin(oidc["authority"], "oidc.authority"), clientId, scope, resource } };
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
