import { describe, expect, it } from "vitest";
import type { ReviewMetrics } from "../src/model";
import { banners } from "../src/thresholds";

function metrics(open: number, unassigned: number, oldestMinutes: number): ReviewMetrics {
  return {
    totals: { open, in_review: 0, resolved: 0, dismissed: 0 },
    assignment: { by_reviewer: {}, unassigned_open: unassigned },
    aging: { open_average_minutes: 0, open_oldest_minutes: oldestMinutes, in_review_average_minutes: 0 },
    resolution: { average_minutes: 0, median_minutes: 0, completed_last_24h: 0 },
    queue_health: { backlog_pressure: 0, sla_breaches: 0, escalations_pending: 0 },
    velocity: { average_daily_closed_last_7d: 0, active_reviewers_last_7d: 0 },
  };
}

const levels = (m: ReviewMetrics) => banners(m).map((b) => b.level);

describe("the operators' thresholds (v1 contract)", () => {
  it("warn above 12 open and turn critical above 16", () => {
    expect(levels(metrics(12, 0, 0))).toEqual([]);
    expect(levels(metrics(13, 0, 0))).toEqual(["warning"]);
    expect(levels(metrics(16, 0, 0))).toEqual(["warning"]);
    expect(levels(metrics(17, 0, 0))).toEqual(["critical"]);
  });

  it("warn at 3 unassigned and when the oldest has waited more than 2 h", () => {
    expect(levels(metrics(0, 2, 120))).toEqual([]);
    expect(banners(metrics(0, 3, 0))[0]?.text).toMatch(/3 open tickets have nobody assigned/);
    expect(banners(metrics(0, 0, 121))[0]?.text).toMatch(/2\.0 h/);
  });
});
