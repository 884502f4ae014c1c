import { useQuery } from "@tanstack/react-query";
import { apiUrl } from "./config";

type State = { level: "ok" | "degraded" | "down"; text: string };

/** Liveness and readiness (public routes), every 15 s. */
async function check(): Promise<State> {
  try {
    const live = await fetch(apiUrl("/api/v1/health"));
    if (!live.ok) return { level: "down", text: `API unhealthy (${live.status})` };
    const ready = await fetch(apiUrl("/api/v1/health/ready"));
    if (ready.ok) return { level: "ok", text: "API ready" };
    const body = (await ready.json().catch(() => ({}))) as { checks?: Record<string, { status?: string }> };
    const failing = Object.entries(body.checks ?? {})
      .filter(([, c]) => c.status !== "ok")
      .map(([name]) => name);
    return { level: "degraded", text: `API degraded: ${failing.join(", ") || `readiness ${ready.status}`}` };
  } catch {
    return { level: "down", text: "API unreachable" };
  }
}

export function Health() {
  const { data } = useQuery({ queryKey: ["health"], queryFn: check, refetchInterval: 15_000, retry: false });
  const state = data ?? { level: "degraded", text: "checking the API…" };
  return (
    <span className="health" role="status" aria-live="polite" data-health={state.level}>
      <span className={`dot ${state.level}`} aria-hidden="true" />
      {state.text}
    </span>
  );
}
