// The console is static files. Locally, `vite dev` and `vite preview` proxy /api to the
// stack's API (NEURAFORGE_API, default the local stack's http://127.0.0.1:9000), so the
// page and the API share an origin and no CORS is involved; deployed, the API's origin
// is configured at build time (VITE_API_BASE) and the API answers CORS for the console.
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";
import type { Connect, Plugin } from "vite";

const api = process.env.NEURAFORGE_API ?? "http://127.0.0.1:9000";
// The operations page reads the local stack's Prometheus (PROMETHEUS, default :9090) through here.
const prometheus = process.env.PROMETHEUS ?? "http://127.0.0.1:9090";
const proxy = {
  "/api": { target: api, changeOrigin: false },
  "/prometheus": { target: prometheus, rewrite: (path: string) => path.replace(/^\/prometheus/, "") },
};

// `/config.json` (src/config.ts), answered from this environment: CONSOLE_API_BASE (empty: this
// origin, proxied) and, for OpenID Connect sign-in, CONSOLE_OIDC_AUTHORITY, CONSOLE_OIDC_CLIENT_ID,
// CONSOLE_OIDC_SCOPE and CONSOLE_OIDC_RESOURCE (sent as `resource`, RFC 8707). Deployed, the same file sits beside the assets.
function consoleConfig(): Plugin {
  const env = (name: string) => process.env[name] ?? "";
  const document = () =>
    JSON.stringify({
      api_base: env("CONSOLE_API_BASE"),
      oidc: env("CONSOLE_OIDC_AUTHORITY")
        ? {
            authority: env("CONSOLE_OIDC_AUTHORITY"),
            client_id: env("CONSOLE_OIDC_CLIENT_ID") || "neuraforge-console",
            scope: env("CONSOLE_OIDC_SCOPE") || "openid",
            extra_query_params: env("CONSOLE_OIDC_RESOURCE") ? { resource: env("CONSOLE_OIDC_RESOURCE") } : {},
          }
        : null,
    });
  const serve = (server: { middlewares: Connect.Server }) => {
    server.middlewares.use("/config.json", (_req, res) => {
      res.setHeader("Content-Type", "application/json");
      res.setHeader("Cache-Control", "no-store");
      res.end(document());
    });
  };
  return { name: "console-config", configureServer: serve, configurePreviewServer: serve };
}

export default defineConfig({
  plugins: [react(), consoleConfig()],
  server: { proxy },
  preview: { proxy },
  build: { sourcemap: false, target: "es2022" },
  // Unit tests only: the Playwright specs in e2e/ run against a live stack.
  test: { include: ["tests/**/*.test.ts"] },
});
