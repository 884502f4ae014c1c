import { describe, expect, it } from "vitest";
import { align, toSeries } from "../src/prometheus";

describe("Prometheus results for the charts", () => {
  it("are named by their label and drop values that are not numbers", () => {
    const series = toSeries(
      [
        { metric: { status: "open" }, values: [[10, "1"], [40, "NaN"], [70, "3"]] },
        { metric: {}, values: [[10, "2"]] },
        { metric: { status: "none" }, values: [[10, "NaN"]] },
      ],
      "status",
    );
    expect(series.map((s) => s.name)).toEqual(["open", "status"]);
    expect(series[0]?.points).toEqual([[10, 1], [70, 3]]);
  });

  it("share one time axis, with gaps where a series has no point", () => {
    const aligned = align([
      { name: "a", points: [[10, 1], [70, 3]] },
      { name: "b", points: [[40, 5]] },
    ]);
    expect(aligned).toEqual([[10, 40, 70], [1, null, 3], [null, 5, null]]);
  });
});
