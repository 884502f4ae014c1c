// Run by tests/it/e2e.rs after it took the tasks queue away: readiness fails, and the
// header's indicator turns red and names the dependency.
import { expect, test } from "@playwright/test";

test("the health indicator turns red and names the failing dependency", async ({ page }) => {
  await page.goto("/");
  const health = page.locator("[data-health=degraded]");
  await expect(health).toBeVisible();
  await expect(health).toContainText("sqs");
  await page.screenshot({ path: `${process.env["SCREENSHOTS_DIR"] ?? "test-results"}/health-degraded.png` });
});
