import { useEffect, useState } from "react";
import { useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import { explain } from "./api";
import { useSignedIn } from "./context";
import { listPath, readFilters, visibleLanes, writeFilters, type Filters } from "./filters";
import type { ReviewMetrics, Ticket, TicketChange } from "./model";
import { follow } from "./streams";
import { banners } from "./thresholds";

/** Follows ticket changes and refreshes what they touch: the lanes, the cards, the ticket. */
export function useReviewEvents(): boolean {
  const { session } = useSignedIn();
  const queries = useQueryClient();
  const [live, setLive] = useState(false);
  useEffect(() => {
    const stop = new AbortController();
    void follow({
      path: "/api/v1/reviews/events",
      token: session.token,
      signal: stop.signal,
      onState: setLive,
      onMessage: (_id, _event, data) => {
        const change = JSON.parse(data) as TicketChange;
        void queries.invalidateQueries({ queryKey: ["tickets"] });
        void queries.invalidateQueries({ queryKey: ["metrics"] });
        void queries.invalidateQueries({ queryKey: ["ticket", change.ticket_id] });
      },
    }).catch(() => { setLive(false); });
    return () => { stop.abort(); };
  }, [session.token, queries]);
  return live;
}

function Lane({ title, statuses, filters }: { title: string; statuses: Ticket["status"][]; filters: Filters }) {
  const { api } = useSignedIn();
  const list = useInfiniteQuery({
    queryKey: ["tickets", statuses, filters],
    queryFn: ({ pageParam }) => api.page<Ticket>(listPath(statuses, filters, pageParam)),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next ?? undefined,
  });
  const tickets = list.data?.pages.flatMap((p) => p.items) ?? [];
  const id = `lane-${statuses.join("-")}`;
  return (
    <section className="lane" aria-labelledby={id} data-lane={statuses.join(",")}>
      <h2 id={id}>{title} <span className="muted">({tickets.length}{list.hasNextPage ? "+" : ""})</span></h2>
      {list.isError && <p role="alert" className="error">{explain(list.error, "reviews:read")}</p>}
      <ul>
        {tickets.map((t) => (
          <li key={t.ticket_id} data-ticket={t.ticket_id}>
            <a href={`#/tickets/${t.ticket_id}`}>{t.escalation_payload.prompt?.slice(0, 80) ?? t.ticket_id}</a>
            <div className="muted">
              {t.sources.join(", ")} · opened {new Date(t.created_at).toLocaleString()}
              {t.assigned_to ? ` · ${t.assigned_to}` : " · unassigned"}
            </div>
          </li>
        ))}
      </ul>
      {list.hasNextPage && (
        <button type="button" onClick={() => void list.fetchNextPage()} disabled={list.isFetchingNextPage}>
          Load more
        </button>
      )}
    </section>
  );
}

function Cards({ metrics }: { metrics: ReviewMetrics }) {
  const cards: [string, string][] = [
    ["Open", String(metrics.totals.open)],
    ["In review", String(metrics.totals.in_review)],
    ["Unassigned", String(metrics.assignment.unassigned_open)],
    ["Oldest open", `${Math.round(metrics.aging.open_oldest_minutes)} min`],
    ["SLA breaches", String(metrics.queue_health.sla_breaches)],
    ["Closed per day (7 d)", metrics.velocity.average_daily_closed_last_7d.toFixed(1)],
  ];
  return (
    <div className="cards">
      {cards.map(([label, value]) => (
        <div className="card" key={label} data-card={label}>
          <strong>{value}</strong>
          {label}
        </div>
      ))}
    </div>
  );
}

export function Queue() {
  const { api } = useSignedIn();
  const live = useReviewEvents();
  const [filters, setFilters] = useState<Filters>(() => readFilters(window.location.search));
  useEffect(() => {
    const url = `${window.location.pathname}${writeFilters(filters)}${window.location.hash}`;
    window.history.replaceState(null, "", url);
  }, [filters]);
  const metrics = useQuery({
    queryKey: ["metrics"],
    queryFn: () => api.get<ReviewMetrics>("/api/v1/reviews/metrics"),
  });
  return (
    <>
      <p className="muted" role="status" data-live={live}>
        {live ? "Live: changes appear as they happen." : "Connecting to live updates…"}
      </p>
      {metrics.data && banners(metrics.data).map((b) => (
        <p key={b.text} role="alert" className={`banner ${b.level}`}>{b.text}</p>
      ))}
      {metrics.data && <Cards metrics={metrics.data} />}
      {metrics.isError && <p role="alert" className="error">{explain(metrics.error, "reviews:read")}</p>}
      <form className="filters" aria-label="Filters" onSubmit={(e) => { e.preventDefault(); }}>
        <label>
          Status
          <select
            name="status"
            value={filters.status}
            onChange={(e) => { setFilters({ ...filters, status: readFilters(`?status=${e.target.value}`).status }); }}
          >
            <option value="">Every lane</option>
            <option value="open">Open</option>
            <option value="in_review">In review</option>
            <option value="resolved">Resolved</option>
            <option value="dismissed">Dismissed</option>
          </select>
        </label>
        <label>
          Reviewer
          <input
            name="assignee"
            value={filters.assignee}
            onChange={(e) => { setFilters({ ...filters, assignee: e.target.value }); }}
          />
        </label>
        <label>
          Minimum age (minutes)
          <input
            name="min_age_minutes"
            inputMode="numeric"
            pattern="[0-9]*"
            value={filters.minAgeMinutes}
            onChange={(e) => { setFilters({ ...filters, minAgeMinutes: e.target.value.replace(/\D/g, "") }); }}
          />
        </label>
      </form>
      <div className="lanes">
        {visibleLanes(filters).map((lane) => (
          <Lane key={lane.title} title={lane.title} statuses={lane.statuses} filters={filters} />
        ))}
      </div>
    </>
  );
}
