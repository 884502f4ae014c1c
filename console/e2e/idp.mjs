// A real OpenID Connect provider for the console's sign-in test: node-oidc-provider (a certified
// implementation), on loopback, with the console as a public client (authorization code + PKCE)
// and JWT access tokens for the API's audience carrying the account's roles.
//
//   node e2e/idp.mjs <port> <console origin> <audience> <public JWKS file>
//
// The API verifies its tokens with the public keys written to the JWKS file (AUTH__JWKS_FILE).
// Any login works (the provider's development sign-in form); roles come from ROLES below.
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, consoleOrigin, audience, jwksFile] = process.argv.slice(2);
if (!port || !consoleOrigin || !audience || !jwksFile) {
  console.error("usage: node e2e/idp.mjs <port> <console origin> <audience> <public JWKS file>");
  process.exit(2);
}

/** Who has which roles (everyone else has none). */
const ROLES = { rita: ["reviewer"], ada: ["review_admin"], alice: ["submitter"] };

const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const kid = "idp-e2e-1";
const signing = { ...privateKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" };
const verifying = { ...publicKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" };
writeFileSync(jwksFile, JSON.stringify({ keys: [verifying] }));

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "neuraforge-console",
      application_type: "web",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code"],
      response_types: ["code"],
      redirect_uris: [`${consoleOrigin}/`],
      post_logout_redirect_uris: [`${consoleOrigin}/`],
    },
  ],
  jwks: { keys: [signing] },
  findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  // A first-party client: consent is implied, so the test signs in without a consent page.
  loadExistingGrant: async (ctx) => {
    if (!ctx.oidc.session.accountId) return undefined;
    const existing = ctx.oidc.result?.consent?.grantId ?? ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (existing) return ctx.oidc.provider.Grant.find(existing);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope("openid");
    grant.addResourceScope(audience, "api");
    await grant.save();
    return grant;
  },
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== audience) throw new Error(`unknown resource ${resource}`);
        return { scope: "api", audience, accessTokenFormat: "jwt", accessTokenTTL: 3600, jwt: { sign: { alg: "RS256" } } };
      },
    },
  },
  extraTokenClaims: (_ctx, token) => ({ roles: ROLES[token.accountId] ?? [] }),
  pkce: { required: () => true },
});

provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`identity provider on ${issuer}`);
});
