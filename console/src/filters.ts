// The queue's filters, kept in the page's query string so a view can be shared and survives a reload.
import type { TicketStatus } from "./model";

export interface Filters {
  assignee: string;
  minAgeMinutes: string;
}

export const LANES: { title: string; statuses: TicketStatus[] }[] = [
  { title: "Open", statuses: ["open"] },
  { title: "In review", statuses: ["in_review"] },
  { title: "Recently closed", statuses: ["resolved", "dismissed"] },
];

export function readFilters(search: string): Filters {
  const params = new URLSearchParams(search);
  const minAge = params.get("min_age_minutes") ?? "";
  return {
    assignee: params.get("assignee") ?? "",
    minAgeMinutes: /^\d{1,6}$/.test(minAge) ? minAge : "",
  };
}

export function writeFilters(f: Filters): string {
  const params = new URLSearchParams();
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
