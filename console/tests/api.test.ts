import { describe, expect, it } from "vitest";
import { ApiError, explain } from "../src/api";
import { backoff } from "../src/streams";

describe("what a failed call tells the user", () => {
  it("says someone else acted first on a 409, with the ticket's status", () => {
    const e = new ApiError({ status: 409, detail: "conflict", current_status: "in_review" });
    expect(explain(e)).toBe("Someone else acted first: the ticket is now in review. The page has been refreshed.");
  });

  it("names the missing scope on a 403, and separation of duties apart", () => {
    expect(explain(new ApiError({ status: 403 }), "reviews:admin")).toMatch(/needs reviews:admin/);
    const sod = new ApiError({ status: 403, type: "urn:neuraforge:problem:separation-of-duties" });
    expect(explain(sod)).toMatch(/someone else must review it/);
  });

  it("sends the user back to sign in on a 401", () => {
    expect(explain(new ApiError({ status: 401 }))).toMatch(/sign in again/);
    expect(explain(new TypeError("fetch failed"))).toMatch(/could not be reached/);
  });
});

describe("stream reconnects", () => {
  it("wait the server's hint, longer after each failure, at most 30 s", () => {
    expect(backoff(1)).toBe(2000);
    expect(backoff(2)).toBe(4000);
    expect(backoff(10)).toBe(30_000);
  });
});
