// Deployed sign-in: OpenID Connect authorization code with PKCE against a real provider
// (node-oidc-provider, e2e/idp.mjs), whose RS256 access token the real API verifies with the
// provider's published keys. The token never appears in a URL or in local storage.
import { expect, test } from "@playwright/test";

const idp = process.env["IDP_URL"] ?? "";
const shots = process.env["SCREENSHOTS_DIR"] ?? "test-results";

test("a reviewer signs in at the identity provider and works in the console with its token", async ({ page }) => {
  expect(idp, "IDP_URL").not.toBe("");
  const authorizations: URL[] = [];
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.origin === idp && url.pathname === "/auth") authorizations.push(url);
  });

  // Start from the operations page: the console returns there after signing in.
  await page.goto("/#/operations");
  await page.getByRole("button", { name: `Sign in with ${new URL(idp).host}` }).click();

  // The provider's own sign-in form.
  await page.locator('input[name="login"]').fill("rita");
  await page.locator('input[name="password"]').fill("any password");
  await page.screenshot({ path: `${shots}/sign-in-provider.png`, fullPage: true });
  await page.getByRole("button", { name: "Sign-in" }).click();

  // Back in the console, signed in with the provider's token, on the page it started from.
  await expect(page.getByLabel("signed in as")).toContainText("rita (reviewer)");
  await expect(page).toHaveURL(/\/#\/operations$/);
  expect(page.url()).not.toMatch(/[?&](code|state)=/);
  // The API accepted the RS256 token: the operations page and the queue load, live.
  await expect(page.getByRole("link", { name: "Operations" })).toHaveAttribute("aria-current", "page");
  await page.getByRole("link", { name: "Queue" }).click();
  await expect(page.locator('[data-card="Open"] strong')).toBeVisible();
  await expect(page.locator("[data-live=true]")).toBeVisible();
  await expect(page.getByRole("alert")).toHaveCount(0);

  // Authorization code with PKCE (S256), asking for the API as the token's audience.
  expect(authorizations.length).toBeGreaterThan(0);
  const auth = authorizations[0];
  expect(auth?.searchParams.get("response_type")).toBe("code");
  expect(auth?.searchParams.get("code_challenge_method")).toBe("S256");
  expect(auth?.searchParams.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
  expect(auth?.searchParams.get("resource")).toBe("urn:neuraforge:api");

  // The token is kept for the tab only.
  const local = await page.evaluate(() => JSON.stringify(window.localStorage));
  expect(local).not.toMatch(/eyJ/);
  const kept = await page.evaluate(() => window.sessionStorage.getItem("neuraforge.session") ?? "");
  expect(kept.split(".")).toHaveLength(3);

  // Signing out forgets it.
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  expect(await page.evaluate(() => window.sessionStorage.getItem("neuraforge.session"))).toBeNull();
});
