import { createContext, useContext } from "react";
import type { Api } from "./api";
import type { Session } from "./session";

export interface Signed {
  api: Api;
  session: Session;
}

export const SignedIn = createContext<Signed | null>(null);

/** The signed-in user's API client and session (only inside the signed-in part of the page). */
export function useSignedIn(): Signed {
  const signed = useContext(SignedIn);
  if (!signed) throw new Error("useSignedIn outside the signed-in console");
  return signed;
}
