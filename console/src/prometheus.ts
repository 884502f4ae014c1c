// Prometheus' HTTP query API, through the console server's `/prometheus` proxy (local stack).
// The queries are the Grafana dashboards' own (dashboards/*.json), over the last hour.

export interface Series {
  /** The series' labels, joined: `status=open`, or the query's name when there are none. */
  name: string;
  points: [number, number][];
}

export const PROMETHEUS_BASE = "/prometheus";

export interface Chart {
  title: string;
  unit: string;
  queries: { expr: string; label: string }[];
}

const rate = "5m";

/** The three views operators asked for, and the task latency SLO. */
export const VIEWS: { title: string; charts: Chart[] }[] = [
  {
    title: "Reviewer workload",
    charts: [
      { title: "Tickets by status", unit: "tickets", queries: [{ expr: "max by (status) (neuraforge_review_tickets)", label: "status" }] },
      { title: "Waiting tickets per reviewer", unit: "tickets", queries: [{ expr: "max by (reviewer) (neuraforge_review_tickets_by_reviewer)", label: "reviewer" }] },
      { title: "Waiting tickets by age", unit: "tickets", queries: [{ expr: "max by (age) (neuraforge_review_tickets_by_age)", label: "age" }] },
    ],
  },
  {
    title: "Negotiation health",
    charts: [
      { title: "Negotiation rounds p95", unit: "rounds", queries: [{ expr: `histogram_quantile(0.95, sum by (le) (rate(neuraforge_negotiation_rounds_bucket[${rate}])))`, label: "" }] },
      { title: "Orchestrator runs by status", unit: "runs/s", queries: [{ expr: `sum by (status) (rate(neuraforge_orchestrator_runs_total[${rate}]))`, label: "status" }] },
      { title: "Guardrail decisions", unit: "decisions/s", queries: [{ expr: `sum by (decision) (rate(neuraforge_guardrail_decision_total[${rate}]))`, label: "decision" }] },
    ],
  },
  {
    title: "Agent tool usage",
    charts: [
      { title: "Tool calls by tool", unit: "calls/s", queries: [{ expr: `sum by (tool) (rate(neuraforge_agent_tool_usage_total[${rate}]))`, label: "tool" }] },
      { title: "Tool call outcomes", unit: "calls/s", queries: [{ expr: `sum by (outcome) (rate(neuraforge_agent_tool_usage_total[${rate}]))`, label: "outcome" }] },
    ],
  },
  {
    title: "Task latency SLO (p95 under 45 s, 60 s critical)",
    charts: [
      { title: "Task latency p50 / p95", unit: "s", queries: [
        { expr: `histogram_quantile(0.5, sum by (le) (rate(neuraforge_task_latency_seconds_bucket[${rate}])))`, label: "p50" },
        { expr: `histogram_quantile(0.95, sum by (le) (rate(neuraforge_task_latency_seconds_bucket[${rate}])))`, label: "p95" },
      ] },
      { title: "Tasks finished by status", unit: "tasks/s", queries: [{ expr: `sum by (status) (rate(neuraforge_tasks_finished_total[${rate}]))`, label: "status" }] },
    ],
  },
];

interface RangeResponse {
  status: string;
  error?: string;
  data?: { result: { metric: Record<string, string>; values: [number, string][] }[] };
}

/** One query over the last `seconds`, a point every `step` seconds. */
export async function queryRange(expr: string, label: string, seconds = 3600, step = 30): Promise<Series[]> {
  const [start, end] = lastSeconds(seconds);
  const params = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(step) });
  const response = await fetch(`${PROMETHEUS_BASE}/api/v1/query_range?${params.toString()}`);
  if (!response.ok) throw new Error(`Prometheus answered ${response.status}`);
  const body = (await response.json()) as RangeResponse;
  if (body.status !== "success" || !body.data) throw new Error(body.error ?? "Prometheus query failed");
  return toSeries(body.data.result, label);
}

/** The series with at least one number (a quantile of nothing is NaN, which is no data). */
export function toSeries(result: { metric: Record<string, string>; values: [number, string][] }[], label: string): Series[] {
  return result
    .map((r) => ({
      name: (label && r.metric[label]) || label || "value",
      points: r.values
        .map(([t, v]): [number, number] => [t, Number(v)])
        .filter(([, v]) => Number.isFinite(v)),
    }))
    .filter((s) => s.points.length > 0);
}

/** The chart's time range: the last `seconds`, in seconds since the epoch. */
export function lastSeconds(seconds = 3600, now: number = Date.now()): [number, number] {
  const end = Math.floor(now / 1000);
  return [end - seconds, end];
}

/** Series on one time axis, as uPlot wants them: `[times, values of each series…]`, null where one has no point. */
export function align(series: Series[]): (number | null)[][] {
  const times = [...new Set(series.flatMap((s) => s.points.map(([t]) => t)))].sort((a, b) => a - b);
  return [
    times,
    ...series.map((s) => {
      const at = new Map(s.points);
      return times.map((t) => at.get(t) ?? null);
    }),
  ];
}
