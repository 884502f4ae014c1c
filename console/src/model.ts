// The API's documents, as docs/api.md describes them.

export type TicketStatus = "open" | "in_review" | "resolved" | "dismissed";

export interface GuardrailDecision {
  policy_id: string;
  stage?: string;
  decision: string;
  reason: string;
  risk_score?: number;
}

export interface Note {
  note_id: string;
  author: string;
  content: string;
  created_at: string;
}

export interface Ticket {
  ticket_id: string;
  task_id: string;
  status: TicketStatus;
  summary: string | null;
  created_at: string;
  updated_at: string;
  assigned_to: string | null;
  sources: string[];
  escalation_payload: {
    meta?: { run_id?: string; reasons?: string[]; submitted_by?: string };
    negotiation?: unknown;
    guardrails?: GuardrailDecision[];
    prompt?: string;
    outputs?: unknown[];
  };
  notes?: Note[];
  history?: Record<string, unknown>[];
}

export interface ReviewMetrics {
  totals: Record<TicketStatus, number>;
  assignment: { by_reviewer: Record<string, number>; unassigned_open: number };
  aging: { open_average_minutes: number; open_oldest_minutes: number; in_review_average_minutes: number };
  // null until a ticket has closed.
  resolution: { average_minutes: number | null; median_minutes: number | null; completed_last_24h: number };
  queue_health: { backlog_pressure: number; sla_breaches: number; escalations_pending: number };
  velocity: { average_daily_closed_last_7d: number; active_reviewers_last_7d: number };
}

/** One message of `GET /api/v1/reviews/events`. */
export interface TicketChange {
  id: string;
  event: "opened" | "assigned" | "unassigned" | "note_added" | "resolved" | "dismissed";
  ticket_id: string;
  task_id?: string;
  status?: TicketStatus;
  assigned_to?: string;
  by: string;
  at: string;
}

/** One message of `GET /api/v1/tasks/{task_id}/events`. */
export interface TaskEvent {
  sequence: number;
  event: string;
  timestamp: string;
  payload: Record<string, unknown>;
}
