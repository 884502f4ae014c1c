// OpenID Connect sign-in: authorization code with PKCE (oidc-client-ts), against the issuer the
// API trusts. Loaded only when the configuration names one, so pasted-token use stays small.
// The provider's answer comes back to the console's root with `code` and `state` in the query;
// the access token becomes the session (session storage), and the query is cleared at once.
import { UserManager, WebStorageStateStore } from "oidc-client-ts";
import type { OidcConfig } from "./config";

function manager(c: OidcConfig): UserManager {
  const home = `${window.location.origin}/`;
  const store = new WebStorageStateStore({ store: window.sessionStorage });
  return new UserManager({
    authority: c.authority,
    client_id: c.clientId,
    redirect_uri: home,
    post_logout_redirect_uri: home,
    response_type: "code",
    scope: c.scope,
    extraQueryParams: c.extraQueryParams,
    // Nothing beyond the one redirect: no user info call, no hidden frames, no refresh.
    loadUserInfo: false,
    automaticSilentRenew: false,
    monitorSession: false,
    userStore: store,
    stateStore: store,
  });
}

/** Sends the browser to the provider; `returnTo` (the page's hash route) comes back with it. */
export async function startSignIn(c: OidcConfig, returnTo: string): Promise<void> {
  await manager(c).signinRedirect({ url_state: returnTo });
}

/** Completes a sign-in: the access token and where to return, or why it failed (one line). */
export async function finishSignIn(c: OidcConfig, url: string): Promise<{ token: string; returnTo: string } | string> {
  const users = manager(c);
  try {
    const user = await users.signinRedirectCallback(url);
    // The console keeps its own copy (the session); the library's is not needed after this.
    await users.removeUser();
    return { token: user.access_token, returnTo: user.url_state ?? "" };
  } catch (e) {
    return `Sign-in failed: ${e instanceof Error ? e.message : String(e)}`;
  }
}
