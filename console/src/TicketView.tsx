import { useEffect, useState, type SubmitEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { ApiError, explain } from "./api";
import { apiUrl } from "./config";
import { useSignedIn } from "./context";
import type { TaskEvent, Ticket } from "./model";
import { follow, withEvent } from "./streams";
import { useReviewEvents } from "./Queue";

/** The task's events, live, resuming after a dropped connection (Last-Event-ID). Keyed by
 * task: another task's timeline is a new component. */
function Timeline({ taskId }: { taskId: string }) {
  const { session } = useSignedIn();
  const [events, setEvents] = useState<TaskEvent[]>([]);
  const [refused, setRefused] = useState<number | null>(null);
  useEffect(() => {
    const stop = new AbortController();
    void follow({
      path: `/api/v1/tasks/${taskId}/events`,
      token: session.token,
      signal: stop.signal,
      onRefused: setRefused,
      onMessage: (_id, _event, data) => {
        const event = JSON.parse(data) as TaskEvent;
        setEvents((seen) => withEvent(seen, event));
      },
    }).catch(() => undefined);
    return () => { stop.abort(); };
  }, [taskId, session.token]);
  return (
    <section aria-labelledby="timeline-title">
      <h3 id="timeline-title">Task timeline</h3>
      {refused && <p role="alert" className="error">The task's events were refused ({refused}).</p>}
      <ol className="timeline" aria-live="polite">
        {events.map((e) => (
          <li key={e.sequence} data-event={e.event}>
            {new Date(e.timestamp).toLocaleTimeString()} #{e.sequence} {e.event}
          </li>
        ))}
      </ol>
    </section>
  );
}

async function download(path: string, token: string, name: string) {
  const response = await fetch(apiUrl(path), { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new ApiError({ status: response.status });
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.click();
  URL.revokeObjectURL(url);
}

type Action =
  | { kind: "assign" }
  | { kind: "unassign" }
  | { kind: "note"; content: string }
  | { kind: "resolve"; status: "resolved" | "dismissed"; outcome: "approve" | "reject"; summary: string };

export function TicketView({ ticketId }: { ticketId: string }) {
  const { api, session } = useSignedIn();
  useReviewEvents();
  const queries = useQueryClient();
  const [message, setMessage] = useState<string | null>(null);
  const [note, setNote] = useState("");
  const [summary, setSummary] = useState("");
  const [decision, setDecision] = useState("approve");
  const ticket = useQuery({
    queryKey: ["ticket", ticketId],
    queryFn: () => api.get<Ticket>(`/api/v1/reviews/${ticketId}`),
  });
  const act = useMutation({
    mutationFn: (action: Action) => {
      const base = `/api/v1/reviews/${ticketId}`;
      switch (action.kind) {
        case "assign":
          return api.send<Ticket>("POST", `${base}/assign`);
        case "unassign":
          return api.send<Ticket>("PATCH", `${base}/unassign`);
        case "note":
          return api.send<Ticket>("POST", `${base}/notes`, { content: action.content });
        case "resolve":
          return api.send<Ticket>("POST", `${base}/resolve`, {
            status: action.status,
            outcome: action.outcome,
            summary: action.summary,
          });
      }
    },
    onSuccess: (updated, action) => {
      queries.setQueryData(["ticket", ticketId], (old: Ticket | undefined) => ({ ...old, ...updated }));
      void queries.invalidateQueries({ queryKey: ["ticket", ticketId] });
      setMessage(action.kind === "note" ? "Note added." : `Ticket ${updated.status.replace("_", " ")}.`);
      if (action.kind === "note") setNote("");
    },
    onError: (error) => {
      setMessage(explain(error));
      if (error instanceof ApiError && error.status === 409) {
        void queries.invalidateQueries({ queryKey: ["ticket", ticketId] });
      }
    },
  });

  if (ticket.isError) {
    return <p role="alert" className="error">{explain(ticket.error, "reviews:read")} <a href="#/">Back to the queue</a></p>;
  }
  const t = ticket.data;
  if (!t) return <p role="status">Loading the ticket…</p>;

  const canWrite = session.scopes.has("reviews:write");
  const isAdmin = session.scopes.has("reviews:admin");
  const mine = t.assigned_to === session.subject;
  const pending = t.status === "open" || t.status === "in_review";
  const p = t.escalation_payload;
  const resolve = (e: SubmitEvent) => {
    e.preventDefault();
    act.mutate({
      kind: "resolve",
      status: decision === "dismiss" ? "dismissed" : "resolved",
      outcome: decision === "reject" ? "reject" : "approve",
      summary,
    });
  };
  return (
    <section className="ticket" aria-labelledby="ticket-title" data-status={t.status}>
      <p><a href="#/">← Back to the queue</a></p>
      <h2 id="ticket-title">Ticket {t.ticket_id}</h2>
      <p>
        Status <strong data-testid="ticket-status">{t.status.replace("_", " ")}</strong>
        {t.assigned_to ? `, assigned to ${t.assigned_to}` : ", unassigned"} · task <code>{t.task_id}</code>
        {p.meta?.submitted_by ? ` · submitted by ${p.meta.submitted_by}` : ""}
      </p>
      {message && <p role="status" className="notice">{message}</p>}
      {canWrite && pending && (
        <div className="actions">
          {t.status === "open" && (
            <button type="button" onClick={() => { act.mutate({ kind: "assign" }); }} disabled={act.isPending}>
              Assign to me
            </button>
          )}
          {t.status === "in_review" && (mine || isAdmin) && (
            <button type="button" onClick={() => { act.mutate({ kind: "unassign" }); }} disabled={act.isPending}>
              Unassign
            </button>
          )}
        </div>
      )}
      <h3>Why it was escalated</h3>
      <ul>{(p.meta?.reasons ?? []).map((r) => <li key={r}>{r}</li>)}</ul>
      <h3>Guardrail decisions</h3>
      <table>
        <thead><tr><th scope="col">Policy</th><th scope="col">Decision</th><th scope="col">Reason</th><th scope="col">Risk</th></tr></thead>
        <tbody>
          {(p.guardrails ?? []).map((g, i) => (
            <tr key={`${g.policy_id}-${i}`}>
              <td>{g.policy_id}</td><td>{g.decision}</td><td>{g.reason}</td><td>{g.risk_score ?? "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Negotiation</h3>
      <pre>{p.negotiation ? JSON.stringify(p.negotiation, null, 2) : "No negotiation."}</pre>
      <h3>Prompt (redacted)</h3>
      <pre>{p.prompt ?? ""}</pre>
      <h3>Outputs</h3>
      <pre>{JSON.stringify(p.outputs ?? [], null, 2)}</pre>
      <h3>Notes</h3>
      <ul data-testid="notes">
        {(t.notes ?? []).map((n) => (
          <li key={n.note_id}>
            <strong>{n.author}</strong> <span className="muted">{new Date(n.created_at).toLocaleString()}</span>: {n.content}
          </li>
        ))}
      </ul>
      {canWrite && pending && (
        <form onSubmit={(e) => { e.preventDefault(); act.mutate({ kind: "note", content: note }); }}>
          <label>
            Add a note
            <textarea name="note" rows={3} value={note} onChange={(e) => { setNote(e.target.value); }} maxLength={10000} required />
          </label>
          <p><button type="submit" disabled={act.isPending}>Add note</button></p>
        </form>
      )}
      {canWrite && pending && (mine || isAdmin || !t.assigned_to) && (
        <form onSubmit={resolve} aria-label="Resolve">
          <fieldset>
            <legend>Resolve</legend>
            <label>
              Outcome
              <select name="outcome" value={decision} onChange={(e) => { setDecision(e.target.value); }}>
                <option value="approve">Approve (the task completes)</option>
                <option value="reject">Reject (the task fails)</option>
                <option value="dismiss">Dismiss (the escalation was unfounded)</option>
              </select>
            </label>
            <label>
              Summary
              <textarea name="summary" rows={2} value={summary} onChange={(e) => { setSummary(e.target.value); }} maxLength={4000} />
            </label>
            <p><button type="submit" disabled={act.isPending}>Resolve</button></p>
          </fieldset>
        </form>
      )}
      <h3>History</h3>
      <ol>
        {(t.history ?? []).map((h, i) => (
          <li key={i}>{String(h["action"])} by {String(h["by"])} at {new Date(Number(h["at"])).toLocaleString()}</li>
        ))}
      </ol>
      {session.scopes.has("reports:read") && (
        <div className="actions">
          <button type="button" onClick={() => void download(`/api/v1/reports/${t.task_id}/dossier.json`, session.token, `dossier-${t.task_id}.json`).catch((e: unknown) => { setMessage(explain(e, "reports:read")); })}>
            Download dossier (JSON)
          </button>
          <button type="button" onClick={() => void download(`/api/v1/reports/${t.task_id}/dossier.md`, session.token, `dossier-${t.task_id}.md`).catch((e: unknown) => { setMessage(explain(e, "reports:read")); })}>
            Download dossier (Markdown)
          </button>
        </div>
      )}
      <Timeline key={t.task_id} taskId={t.task_id} />
    </section>
  );
}
