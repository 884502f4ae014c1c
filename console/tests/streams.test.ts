import { describe, expect, it } from "vitest";
import { backoff, withEvent } from "../src/streams";

describe("following a stream", () => {
  it("reconnects after the server's retry hint, waiting longer after each failure, at most 30 s", () => {
    expect(backoff(0)).toBe(2000);
    expect(backoff(1)).toBe(2000);
    expect(backoff(2)).toBe(4000);
    expect(backoff(3)).toBe(8000);
    expect(backoff(10)).toBe(30_000);
    expect(backoff(1, 500)).toBe(500);
  });

  it("keeps one event per sequence, in order, when a reconnect repeats or reorders them", () => {
    const e = (sequence: number) => ({ sequence, event: `e${sequence}` });
    let seen = [e(1), e(2)];
    seen = withEvent(seen, e(2));
    expect(seen.map((x) => x.sequence)).toEqual([1, 2]);
    seen = withEvent(seen, e(4));
    seen = withEvent(seen, e(3));
    expect(seen.map((x) => x.sequence)).toEqual([1, 2, 3, 4]);
    const same = withEvent(seen, e(3));
    expect(same).toBe(seen);
  });
});
