import { describe, expect, it } from "vitest";
import { isSignInCallback } from "../src/callback";
import { parseConfig } from "../src/config";

describe("the console's configuration", () => {
  it("defaults to the page's own origin and pasted tokens", () => {
    expect(parseConfig({})).toEqual({ apiBase: "", oidc: null });
  });

  it("reads the API's origin and the identity provider, with the scope defaulted", () => {
    const c = parseConfig({
      api_base: "https://abc.execute-api.us-east-1.amazonaws.com/live/",
      oidc: { authority: "https://id.example.com", client_id: "console", extra_query_params: { audience: "neuraforge" } },
    });
    expect(c).toEqual({
      apiBase: "https://abc.execute-api.us-east-1.amazonaws.com/live",
      oidc: { authority: "https://id.example.com", clientId: "console", scope: "openid", extraQueryParams: { audience: "neuraforge" } },
    });
  });

  it("refuses plain http except on loopback, and an issuer without a client", () => {
    expect(parseConfig({ api_base: "http://api.example.com" })).toMatch(/must be https/);
    expect(parseConfig({ api_base: "http://127.0.0.1:9000" })).toEqual({ apiBase: "http://127.0.0.1:9000", oidc: null });
    expect(parseConfig({ oidc: { authority: "https://id.example.com" } })).toMatch(/client_id is required/);
    expect(parseConfig({ oidc: { client_id: "c", authority: "not a url" } })).toMatch(/^config\.json: /);
    expect(parseConfig([1])).toMatch(/^config\.json: /);
    expect(parseConfig({ oidc: { client_id: "c", authority: "https://i.example", extra_query_params: { a: 1 } } })).toMatch(/a must be a string/);
  });
});

describe("the identity provider's answer", () => {
  it("is recognised by its state and code or error", () => {
    expect(isSignInCallback("?code=abc&state=xyz")).toBe(true);
    expect(isSignInCallback("?error=access_denied&state=xyz")).toBe(true);
    expect(isSignInCallback("?code=abc")).toBe(false);
    expect(isSignInCallback("?status=open")).toBe(false);
  });
});
