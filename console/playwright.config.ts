// End-to-end tests of the console against a running local stack. `tests/it/e2e.rs`
// (`the_console_...`) starts the stack and the console and runs them; by hand, with
// `infra/dev up` running: CONSOLE_URL=http://127.0.0.1:5173 API_URL=http://127.0.0.1:9000
// REVIEWER_TOKEN=$(infra/dev token --sub rita --roles reviewer)
// SUBMITTER_TOKEN=$(infra/dev token --sub alice --roles submitter) npm run e2e
// The browser is Debian's chromium package: nothing downloads one.
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "e2e",
  timeout: 120_000,
  expect: { timeout: 30_000 },
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: process.env["SCREENSHOTS_DIR"] ? `${process.env["SCREENSHOTS_DIR"]}/results` : "test-results",
  use: {
    baseURL: process.env["CONSOLE_URL"] ?? "http://127.0.0.1:5173",
    headless: true,
    launchOptions: { executablePath: process.env["CHROMIUM"] ?? "/usr/bin/chromium" },
    screenshot: "only-on-failure",
  },
});
