// A reviewer works a ticket from open to resolved in the real console against the real
// local stack (functions, moto, event sources), and watches it happen live.
import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page } from "@playwright/test";

const api = process.env["API_URL"] ?? "http://127.0.0.1:9000";
const reviewer = process.env["REVIEWER_TOKEN"] ?? "";
const submitter = process.env["SUBMITTER_TOKEN"] ?? "";
const shots = process.env["SCREENSHOTS_DIR"] ?? "test-results";

async function noSeriousViolations(page: Page) {
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(serious.map((v) => `${v.id}: ${v.help}`)).toEqual([]);
}

test("a reviewer signs in, sees a new ticket arrive live and works it to resolved", async ({ page, request }) => {
  expect(reviewer, "REVIEWER_TOKEN").not.toBe("");

  // Sign in by pasting a token, with the keyboard alone.
  await page.goto("/");
  await noSeriousViolations(page);
  await page.screenshot({ path: `${shots}/sign-in.png`, fullPage: true });
  await page.getByLabel("Token").fill(reviewer);
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await expect(page.getByLabel("signed in as")).toContainText("rita (reviewer)");
  await expect(page.locator("[data-live=true]")).toBeVisible();
  await expect(page.locator("[data-health=ok]")).toBeVisible();

  // A risky submission becomes a ticket that appears in the open lane without a reload.
  const submitted = await request.post(`${api}/api/v1/submit_task`, {
    headers: { Authorization: `Bearer ${submitter}` },
    data: { prompt: "Refund card 4111 1111 1111 1111 by wire transfer" },
  });
  expect(submitted.status()).toBe(200);
  const { task_id: taskId } = (await submitted.json()) as { task_id: string };
  // And one that uses tools, for the operations page's charts.
  const tooled = await request.post(`${api}/api/v1/submit_task`, {
    headers: { Authorization: `Bearer ${submitter}` },
    data: { prompt: "Revenue this quarter was 1200 * 1.15 thousand. Summarise the quarter for the board." },
  });
  expect(tooled.status()).toBe(200);
  const open = page.locator('[data-lane="open"] li');
  await expect(open.filter({ hasText: "Refund card" })).toHaveCount(1, { timeout: 60_000 });
  await expect(page.locator('[data-card="Open"] strong')).not.toHaveText("0");
  await noSeriousViolations(page);
  await page.screenshot({ path: `${shots}/queue.png`, fullPage: true });

  // The ticket: why it was escalated, the redacted prompt, the task's live timeline.
  await open.filter({ hasText: "Refund card" }).getByRole("link").click();
  await expect(page.getByTestId("ticket-status")).toHaveText("open");
  await expect(page.locator("pre").filter({ hasText: "[REDACTED:card]" })).toBeVisible();
  await expect(page.locator('[data-event="review_requested"]')).toBeVisible();
  await expect(page.getByText(taskId)).toBeVisible();
  await noSeriousViolations(page);

  // Assign, note, resolve.
  await page.getByRole("button", { name: "Assign to me" }).click();
  await expect(page.getByTestId("ticket-status")).toHaveText("in review");
  await page.getByLabel("Add a note").fill("Checked with the customer.");
  await page.getByRole("button", { name: "Add note" }).click();
  await expect(page.getByTestId("notes")).toContainText(/rita .+: Checked with the customer\./);
  await expect(page.getByLabel("Add a note")).toHaveValue("");
  await page.getByLabel("Outcome").selectOption("approve");
  await page.getByLabel("Summary").fill("legitimate refund");
  await page.screenshot({ path: `${shots}/ticket.png`, fullPage: true });
  await page.getByRole("button", { name: "Resolve" }).click();
  await expect(page.getByTestId("ticket-status")).toHaveText("resolved");

  // The task completes, and its timeline says so live: its stream ended at review_requested,
  // and the reconnect resumed after it (Last-Event-ID), repeating nothing.
  await expect(page.locator('[data-event="review_decided"]')).toBeVisible();
  await expect(page.locator('[data-event="review_requested"]')).toHaveCount(1);
  await expect(page.locator('[data-event="task_started"]')).toHaveCount(1);
  const task = await request.get(`${api}/api/v1/tasks/${taskId}`, {
    headers: { Authorization: `Bearer ${submitter}` },
  });
  expect(((await task.json()) as { status: string }).status).toBe("completed");

  // Back in the queue, filtered by reviewer: the closed lane holds it, the open lane not.
  await page.getByRole("link", { name: "Back to the queue" }).click();
  await page.getByLabel("Reviewer").fill("rita");
  await expect(page.locator('[data-lane="resolved,dismissed"] li').filter({ hasText: "Refund card" })).toHaveCount(1);
  await expect(page.locator('[data-lane="open"] li')).toHaveCount(0);
  // By status: only that lane, asking the API for that status alone.
  await page.getByLabel("Status").selectOption("resolved");
  await expect(page.locator('[data-lane="resolved"] li').filter({ hasText: "Refund card" })).toHaveCount(1);
  await expect(page.locator('[data-lane="open"]')).toHaveCount(0);
  await page.getByLabel("Status").selectOption("dismissed");
  await expect(page.locator('[data-lane="dismissed"] li')).toHaveCount(0);
  await page.getByLabel("Status").selectOption("");
  await page.getByLabel("Reviewer").fill("nobody");
  await expect(page.locator('[data-lane="resolved,dismissed"] li')).toHaveCount(0);

  // Operations at a glance: the dashboards' views, drawn from Prometheus.
  await page.getByRole("link", { name: "Operations" }).click();
  for (const chart of ["Tickets by status", "Tool calls by tool", "Tasks finished by status"]) {
    await expect(page.locator(`[data-chart="${chart}"] canvas`)).toBeVisible({ timeout: 60_000 });
  }
  await expect(page.locator('[data-chart="Task latency p50 / p95"]')).toBeVisible();
  await noSeriousViolations(page);
  await page.screenshot({ path: `${shots}/operations.png`, fullPage: true });
});

test("a 403 explains the missing role", async ({ page }) => {
  await page.goto("/");
  await page.getByLabel("Token").fill(submitter);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await expect(page.getByRole("alert")).toContainText("do not include reviews:read");
});
