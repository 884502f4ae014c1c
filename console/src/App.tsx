import { lazy, Suspense, useEffect, useMemo, useState } from "react";
import { Api } from "./api";
import { isSignInCallback } from "./callback";
import { config } from "./config";
import { SignedIn } from "./context";
import { Health } from "./Health";
import { Queue } from "./Queue";
import { SignIn } from "./SignIn";
import { TicketView } from "./TicketView";
import { loadSession, msUntilSignOut, parseToken, saveSession, type Session } from "./session";

// Charts load only when the page is opened: the first load stays small.
const Operations = lazy(() => import("./Operations"));

/** `#/tickets/<id>` opens a ticket; anything else is the queue. */
function ticketOf(hash: string): string | null {
  return /^#\/tickets\/([0-9a-f-]{36})$/.exec(hash)?.[1] ?? null;
}

export function App() {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const [ended, setEnded] = useState<string | null>(null);
  const [hash, setHash] = useState(() => window.location.hash);
  const { oidc } = config();
  const [finishing, setFinishing] = useState(() => oidc !== null && isSignInCallback(window.location.search));

  // Back from the identity provider: trade the code for a token, then clear it from the URL.
  useEffect(() => {
    if (!oidc || !finishing) return;
    void import("./oidc")
      .then(({ finishSignIn }) => finishSignIn(oidc, window.location.href))
      .then((result) => {
        const signed = typeof result === "string" ? result : parseToken(result.token);
        const returnTo = typeof result === "string" ? "" : result.returnTo;
        window.history.replaceState(null, "", `${window.location.pathname}${returnTo}`);
        setHash(window.location.hash);
        if (typeof signed === "string") {
          setEnded(signed);
        } else {
          saveSession(signed);
          setEnded(null);
          setSession(signed);
        }
        setFinishing(false);
      });
  }, [oidc, finishing]);

  const providerSignIn = () => {
    if (!oidc) return;
    void import("./oidc")
      .then(({ startSignIn }) => startSignIn(oidc, window.location.hash))
      .catch((e: unknown) => { setEnded(`The identity provider could not be reached: ${String(e)}`); });
  };

  useEffect(() => {
    const onHash = () => { setHash(window.location.hash); };
    window.addEventListener("hashchange", onHash);
    return () => { window.removeEventListener("hashchange", onHash); };
  }, []);

  const signOut = (why: string | null) => {
    saveSession(null);
    setSession(null);
    setEnded(why);
  };

  // Signs out before the token expires, so no action fails half-way.
  useEffect(() => {
    if (!session) return;
    const timer = window.setTimeout(() => {
      signOut(oidc ? "Your session is about to expire: sign in again." : "Your token is about to expire: sign in again with a new one.");
    }, msUntilSignOut(session));
    return () => { window.clearTimeout(timer); };
  }, [session, oidc]);

  const api = useMemo(
    () => new Api(() => session?.token ?? null, () => { signOut("The API refused your token (401): sign in again."); }),
    [session],
  );

  const ticket = ticketOf(hash);
  const operations = hash === "#/operations";
  return (
    <>
      <header>
        <h1>NeuraForge review console</h1>
        <Health />
        {session && (
          <>
            <span aria-label="signed in as">
              {session.subject} ({session.roles.join(", ") || "no roles"}), until{" "}
              <time dateTime={new Date(session.expiresAt).toISOString()}>
                {new Date(session.expiresAt).toLocaleTimeString()}
              </time>
            </span>
            <button type="button" onClick={() => { signOut(null); }}>Sign out</button>
          </>
        )}
      </header>
      <main>
        {finishing ? (
          <p role="status">Signing in…</p>
        ) : !session ? (
          <SignIn
            ended={ended}
            oidc={oidc}
            onProviderSignIn={providerSignIn}
            onSignIn={(s) => { saveSession(s); setEnded(null); setSession(s); }}
          />
        ) : !session.scopes.has("reviews:read") ? (
          <p role="alert" className="error">
            Your roles ({session.roles.join(", ") || "none"}) do not include reviews:read: the console
            needs the observer, reviewer or review_admin role.
          </p>
        ) : (
          <SignedIn.Provider value={{ api, session }}>
            <nav aria-label="Pages">
              <a href="#/" aria-current={!ticket && !operations ? "page" : undefined}>Queue</a>
              {" · "}
              <a href="#/operations" aria-current={operations ? "page" : undefined}>Operations</a>
            </nav>
            {ticket ? (
              <TicketView ticketId={ticket} />
            ) : operations ? (
              <Suspense fallback={<p role="status">Loading the charts…</p>}>
                <Operations />
              </Suspense>
            ) : (
              <Queue />
            )}
          </SignedIn.Provider>
        )}
      </main>
    </>
  );
}
