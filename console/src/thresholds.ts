// The operators' thresholds from the v1 contract: a waiting queue above 12 is a warning and
// above 16 critical, 3 or more unassigned tickets, a ticket waiting more than two hours.
import type { ReviewMetrics } from "./model";

export interface Banner {
  level: "warning" | "critical";
  text: string;
}

export const OPEN_WARNING = 12;
export const OPEN_CRITICAL = 16;
export const UNASSIGNED_WARNING = 3;
export const OLDEST_WARNING_MINUTES = 120;

export function banners(m: ReviewMetrics): Banner[] {
  const out: Banner[] = [];
  const waiting = m.totals.open;
  if (waiting > OPEN_CRITICAL) {
    out.push({ level: "critical", text: `${waiting} tickets are open (critical above ${OPEN_CRITICAL}).` });
  } else if (waiting > OPEN_WARNING) {
    out.push({ level: "warning", text: `${waiting} tickets are open (warning above ${OPEN_WARNING}).` });
  }
  if (m.assignment.unassigned_open >= UNASSIGNED_WARNING) {
    out.push({ level: "warning", text: `${m.assignment.unassigned_open} open tickets have nobody assigned.` });
  }
  if (m.aging.open_oldest_minutes > OLDEST_WARNING_MINUTES) {
    const hours = (m.aging.open_oldest_minutes / 60).toFixed(1);
    out.push({ level: "warning", text: `The oldest open ticket has waited ${hours} h (more than 2 h).` });
  }
  return out;
}
