// The console is static files. Locally, `vite dev` and `vite preview` proxy /api to the
// stack's API (NEURAFORGE_API, default the local stack's http://127.0.0.1:9000), so the
// page and the API share an origin and no CORS is involved; deployed, the API's origin
// is configured at build time (VITE_API_BASE) and the API answers CORS for the console.
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

const api = process.env.NEURAFORGE_API ?? "http://127.0.0.1:9000";
// The operations page reads the local stack's Prometheus (PROMETHEUS, default :9090) through here.
const prometheus = process.env.PROMETHEUS ?? "http://127.0.0.1:9090";
const proxy = {
  "/api": { target: api, changeOrigin: false },
  "/prometheus": { target: prometheus, rewrite: (path: string) => path.replace(/^\/prometheus/, "") },
};

export default defineConfig({
  plugins: [react()],
  server: { proxy },
  preview: { proxy },
  build: { sourcemap: false, target: "es2022" },
  // Unit tests only: the Playwright specs in e2e/ run against a live stack.
  test: { include: ["tests/**/*.test.ts"] },
});
