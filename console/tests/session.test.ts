import { describe, expect, it } from "vitest";
import { msUntilSignOut, parseToken, SIGN_OUT_MARGIN_MS } from "../src/session";

function token(claims: Record<string, unknown>): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.signature`;
}

const now = 1_800_000_000_000;

describe("a pasted token", () => {
  it("gives the subject, roles, the scopes they grant and the expiry", () => {
    const s = parseToken(`Bearer ${token({ sub: "rita", roles: "reviewer", exp: now / 1000 + 3600 })}`, now);
    if (typeof s === "string") throw new Error(s);
    expect(s.subject).toBe("rita");
    expect(s.roles).toEqual(["reviewer"]);
    expect([...s.scopes].sort()).toEqual(["reports:read", "reviews:read", "reviews:write", "tasks:read"]);
    expect(s.expiresAt).toBe(now + 3_600_000);
    expect(s.token.startsWith("Bearer")).toBe(false);
  });

  it("reads roles as a list or comma-separated, and extra scopes", () => {
    const s = parseToken(token({ sub: "ada", roles: ["observer", "review_admin"], scope: "x:y", exp: now / 1000 + 60 }), now);
    if (typeof s === "string") throw new Error(s);
    expect(s.scopes.has("reviews:admin")).toBe(true);
    expect(s.scopes.has("x:y")).toBe(true);
  });

  it("is refused in one line when it cannot be used", () => {
    expect(parseToken("not a token", now)).toMatch(/not a JWT/);
    expect(parseToken(token({ exp: now / 1000 + 60 }), now)).toMatch(/no subject/);
    expect(parseToken(token({ sub: "x" }), now)).toMatch(/no expiry/);
    expect(parseToken(token({ sub: "x", exp: now / 1000 - 1 }), now)).toMatch(/expired/);
    expect(parseToken(token({ sub: "x", exp: now / 1000 + 10 }), now)).toMatch(/expires within 30 s/);
  });

  it("signs out 30 s before it expires", () => {
    const s = parseToken(token({ sub: "x", exp: now / 1000 + 600 }), now);
    if (typeof s === "string") throw new Error(s);
    expect(msUntilSignOut(s, now)).toBe(600_000 - SIGN_OUT_MARGIN_MS);
    expect(msUntilSignOut(s, now + 600_000)).toBe(0);
  });
});
