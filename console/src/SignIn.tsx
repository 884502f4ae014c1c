import { useState, type SubmitEvent } from "react";
import type { OidcConfig } from "./config";
import { parseToken, type Session } from "./session";

interface Props {
  ended: string | null;
  oidc: OidcConfig | null;
  onSignIn: (s: Session) => void;
  onProviderSignIn: () => void;
}

export function SignIn({ ended, oidc, onSignIn, onProviderSignIn }: Props) {
  const [token, setToken] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const submit = (e: SubmitEvent) => {
    e.preventDefault();
    const session = parseToken(token);
    if (typeof session === "string") setProblem(session);
    else onSignIn(session);
  };
  return (
    <section aria-labelledby="sign-in-title">
      <h2 id="sign-in-title">Sign in</h2>
      {ended && <p role="status" className="notice">{ended}</p>}
      {oidc && (
        <p>
          <button type="button" onClick={onProviderSignIn}>
            Sign in with {new URL(oidc.authority).host}
          </button>
        </p>
      )}
      <form onSubmit={submit} aria-label="Sign in by pasting">
        <p>
          {oidc ? "Or paste" : "Paste"} a bearer token. On the local stack, mint one with{" "}
          <code>infra/dev token --sub rita --roles reviewer</code>.
        </p>
        <label>
          Token
          <textarea
            name="token"
            rows={4}
            cols={80}
            value={token}
            onChange={(e) => { setToken(e.target.value); }}
            autoComplete="off"
            spellCheck={false}
            required
          />
        </label>
        {problem && <p role="alert" className="error">{problem}</p>}
        <p><button type="submit">Sign in</button></p>
      </form>
    </section>
  );
}
