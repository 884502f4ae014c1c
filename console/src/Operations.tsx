import { useEffect, useRef } from "react";
import { useQuery } from "@tanstack/react-query";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { align, lastSeconds, queryRange, VIEWS, type Chart, type Series } from "./prometheus";

const COLORS = ["#1f6feb", "#d0312d", "#2e9d4f", "#b26b00", "#7b3fbf", "#00838f", "#6b7280"];

function Plot({ chart, series }: { chart: Chart; series: Series[] }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element || series.length === 0) return;
    const plot = new uPlot(
      {
        width: Math.max(280, element.clientWidth),
        height: 180,
        // The whole hour, however few points there are (one point alone would span years).
        scales: { x: { time: true, range: lastSeconds() } },
        series: [{}, ...series.map((s, i) => ({ label: s.name, stroke: COLORS[i % COLORS.length] ?? "#000", width: 2 }))],
        axes: [{}, { label: chart.unit }],
      },
      align(series) as uPlot.AlignedData,
      element,
    );
    return () => { plot.destroy(); };
  }, [chart, series]);
  return <div ref={box} role="img" aria-label={`${chart.title}: ${series.map((s) => s.name).join(", ")}`} />;
}

function ChartCard({ chart }: { chart: Chart }) {
  const data = useQuery({
    queryKey: ["prometheus", chart.title],
    queryFn: async () => (await Promise.all(chart.queries.map((q) => queryRange(q.expr, q.label)))).flat(),
    refetchInterval: 30_000,
  });
  return (
    <figure className="card" data-chart={chart.title} data-series={data.data?.length ?? 0}>
      <figcaption><strong className="chart-title">{chart.title}</strong></figcaption>
      {data.isError && <p role="alert" className="error">{data.error.message}</p>}
      {data.data && data.data.length === 0 && <p className="muted">No data in the last hour.</p>}
      {data.data && data.data.length > 0 && <Plot chart={chart} series={data.data} />}
    </figure>
  );
}

/** What the Grafana dashboards show, drawn from Prometheus for machines without Grafana. */
export default function Operations() {
  return (
    <>
      <p className="muted">From Prometheus (the local stack's, through this server), the last hour; the Grafana dashboards stay the production view.</p>
      {VIEWS.map((view) => (
        <section key={view.title} aria-labelledby={`view-${view.title}`}>
          <h2 id={`view-${view.title}`}>{view.title}</h2>
          <div className="cards">
            {view.charts.map((chart) => <ChartCard key={chart.title} chart={chart} />)}
          </div>
        </section>
      ))}
    </>
  );
}
