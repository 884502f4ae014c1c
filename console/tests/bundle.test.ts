// The JavaScript budget: what the first page load fetches (the scripts index.html names and
// their static imports) is at most 150 KB gzipped. Runs on the output of `npm run build`.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";

const dist = join(import.meta.dirname, "..", "dist");
const BUDGET = 150 * 1024;

describe("the console's build", () => {
  it("loads at most 150 KB of gzipped JavaScript at first", () => {
    expect(existsSync(join(dist, "index.html")), "run `npm run build` first").toBe(true);
    const html = readFileSync(join(dist, "index.html"), "utf8");
    const entry = [...html.matchAll(/<script[^>]+src="\/([^"]+\.js)"/g)].map((m) => m[1] ?? "");
    const preloads = [...html.matchAll(/<link[^>]+rel="modulepreload"[^>]+href="\/([^"]+\.js)"/g)].map((m) => m[1] ?? "");
    const files = [...entry, ...preloads];
    expect(files.length).toBeGreaterThan(0);
    const bytes = files.reduce((sum, f) => sum + gzipSync(readFileSync(join(dist, f))).length, 0);
    expect(bytes).toBeLessThanOrEqual(BUDGET);
  });
});
