/** Whether the page was opened by the identity provider's answer (a code or an error, with state). */
export function isSignInCallback(search: string): boolean {
  const params = new URLSearchParams(search);
  return params.has("state") && (params.has("code") || params.has("error"));
}
