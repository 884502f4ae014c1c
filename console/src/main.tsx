import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { App } from "./App";
import { loadConfig } from "./config";
import "./styles.css";

const queries = new QueryClient({
  // Live updates come from the event streams, which invalidate what changed: no polling.
  defaultOptions: { queries: { refetchOnWindowFocus: false, retry: 1, staleTime: 30_000 } },
});

const root = document.getElementById("root");
if (root) {
  const page = createRoot(root);
  void loadConfig()
    .catch((e: unknown) => `config.json could not be read: ${String(e)}`)
    .then((loaded) => {
      page.render(
        typeof loaded === "string" ? (
          <main><p role="alert" className="error">The console is misconfigured: {loaded}</p></main>
        ) : (
          <StrictMode>
            <QueryClientProvider client={queries}>
              <App />
            </QueryClientProvider>
          </StrictMode>
        ),
      );
    });
}
