import { describe, expect, it } from "vitest";
import { LANES, listPath, readFilters, visibleLanes, writeFilters } from "../src/filters";

describe("the queue's filters", () => {
  it("survive a round trip through the query string", () => {
    const f = { status: "in_review" as const, assignee: "rita", minAgeMinutes: "30" };
    expect(readFilters(writeFilters(f))).toEqual(f);
    expect(writeFilters({ status: "", assignee: " ", minAgeMinutes: "" })).toBe("");
  });

  it("drop a minimum age that is not a whole number", () => {
    expect(readFilters("?min_age_minutes=-5").minAgeMinutes).toBe("");
    expect(readFilters("?min_age_minutes=abc").minAgeMinutes).toBe("");
  });

  it("drop a status the API does not have", () => {
    expect(readFilters("?status=closed").status).toBe("");
    expect(readFilters("?status=dismissed").status).toBe("dismissed");
  });

  it("show every lane without a status, and only the lane of a chosen one, asking for it alone", () => {
    expect(visibleLanes({ status: "", assignee: "", minAgeMinutes: "" })).toEqual(LANES);
    const lanes = visibleLanes({ status: "dismissed", assignee: "", minAgeMinutes: "" });
    expect(lanes).toEqual([{ title: "Recently closed", statuses: ["dismissed"] }]);
  });

  it("become the list route's server-side filters and cursor", () => {
    const path = listPath(["resolved", "dismissed"], { status: "", assignee: "rita", minAgeMinutes: "5" }, "c1");
    const url = new URL(path, "http://x");
    expect(url.pathname).toBe("/api/v1/reviews");
    expect(url.searchParams.get("status_filter")).toBe("resolved,dismissed");
    expect(url.searchParams.get("assignee")).toBe("rita");
    expect(url.searchParams.get("min_age_minutes")).toBe("5");
    expect(url.searchParams.get("cursor")).toBe("c1");
  });
});
