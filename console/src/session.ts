// Who is signed in: the bearer token and what it says. Tokens live in session storage
// (gone with the tab), never in URLs or local storage.

export interface Session {
  token: string;
  subject: string;
  roles: string[];
  scopes: Set<string>;
  /** When the token expires, in milliseconds since the epoch. */
  expiresAt: number;
}

const STORAGE_KEY = "neuraforge.session";
/** The console signs out this long before the token expires, so no request fails half-way. */
export const SIGN_OUT_MARGIN_MS = 30_000;

// The API's roles table (docs/security.md): what each role may do.
const ROLE_SCOPES: Record<string, string[]> = {
  submitter: ["tasks:submit"],
  observer: ["reviews:read", "reports:read", "tasks:read"],
  reviewer: ["reviews:read", "reviews:write", "reports:read", "tasks:read"],
  review_admin: ["reviews:read", "reviews:write", "reviews:admin", "reports:read", "tasks:read"],
};

function list(value: unknown): string[] {
  const parts = Array.isArray(value)
    ? value.filter((v): v is string => typeof v === "string")
    : typeof value === "string"
      ? [value]
      : [];
  return parts.flatMap((p) => p.split(/[ ,]/)).map((p) => p.trim()).filter(Boolean);
}

function base64UrlDecode(part: string): string {
  const padded = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  return new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)));
}

/** Reads a pasted token, or says in one line why it cannot be used. The API verifies it. */
export function parseToken(raw: string, now: number = Date.now()): Session | string {
  const token = raw.trim().replace(/^Bearer\s+/i, "");
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[1]) return "That is not a JWT (three dot-separated parts).";
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(base64UrlDecode(parts[1])) as Record<string, unknown>;
  } catch {
    return "The token's claims cannot be read.";
  }
  const subject = claims["sub"];
  const exp = claims["exp"];
  if (typeof subject !== "string" || !subject) return "The token names no subject (sub).";
  if (typeof exp !== "number") return "The token has no expiry (exp).";
  const expiresAt = exp * 1000;
  if (expiresAt - SIGN_OUT_MARGIN_MS <= now) return "The token has expired (or expires within 30 s).";
  const roles = list(claims["roles"]);
  const scopes = new Set([
    ...roles.flatMap((r) => ROLE_SCOPES[r] ?? []),
    ...list(claims["scope"]),
    ...list(claims["scopes"]),
  ]);
  return { token, subject, roles, scopes, expiresAt };
}

/** How long until the console must sign out (0: now). */
export function msUntilSignOut(session: Session, now: number = Date.now()): number {
  return Math.max(0, session.expiresAt - SIGN_OUT_MARGIN_MS - now);
}

export function saveSession(session: Session | null): void {
  if (session) sessionStorage.setItem(STORAGE_KEY, session.token);
  else sessionStorage.removeItem(STORAGE_KEY);
}

export function loadSession(): Session | null {
  const token = sessionStorage.getItem(STORAGE_KEY);
  if (!token) return null;
  const session = parseToken(token);
  return typeof session === "string" ? null : session;
}
