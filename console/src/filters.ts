// The queue's filters, kept in the page's query string so a view can be shared and survives a reload.
import type { TicketStatus } from "./model";

export interface Filters {
  /** One status, or "" for every lane. */
  status: TicketStatus | "";
  assignee: string;
  minAgeMinutes: string;
}

const STATUSES: TicketStatus[] = ["open", "in_review", "resolved", "dismissed"];

function isStatus(value: string | null): value is TicketStatus {
  return STATUSES.includes(value as TicketStatus);
}

/** The lanes to show under the filters: all of them, or the one holding the chosen status (asking only for it). */
export function visibleLanes(f: Filters): { title: string; statuses: TicketStatus[] }[] {
  if (!f.status) return LANES;
  const status = f.status;
  return LANES.filter((l) => l.statuses.includes(status)).map((l) => ({ ...l, statuses: [status] }));
}

export const LANES: { title: string; statuses: TicketStatus[] }[] = [
  { title: "Open", statuses: ["open"] },
  { title: "In review", statuses: ["in_review"] },
  { title: "Recently closed", statuses: ["resolved", "dismissed"] },
];

export function readFilters(search: string): Filters {
  const params = new URLSearchParams(search);
  const minAge = params.get("min_age_minutes") ?? "";
  const status = params.get("status");
  return {
    status: isStatus(status) ? status : "",
    assignee: params.get("assignee") ?? "",
    minAgeMinutes: /^\d{1,6}$/.test(minAge) ? minAge : "",
  };
}

export function writeFilters(f: Filters): string {
  const params = new URLSearchParams();
  if (f.status) params.set("status", f.status);
  if (f.assignee.trim()) params.set("assignee", f.assignee.trim());
  if (f.minAgeMinutes) params.set("min_age_minutes", f.minAgeMinutes);
  const text = params.toString();
  return text ? `?${text}` : "";
}

/** The list route's path for one lane under the filters (oldest first, the API's order). */
export function listPath(statuses: TicketStatus[], f: Filters, cursor?: string): string {
  const params = new URLSearchParams({ status_filter: statuses.join(","), limit: "20" });
  if (f.assignee.trim()) params.set("assignee", f.assignee.trim());
  if (f.minAgeMinutes) params.set("min_age_minutes", f.minAgeMinutes);
  if (cursor) params.set("cursor", cursor);
  return `/api/v1/reviews?${params.toString()}`;
}
