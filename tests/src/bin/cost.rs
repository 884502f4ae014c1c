//! `infra/dev cost`: runs every flow of the cost budget on fresh local stacks and
//! prints what each costs per million requests; `--write` also writes `docs/cost.md`.
//!
//! Usage: cost [--iterations N] [--write]

use neuraforge_tests::cost::Prices;
use neuraforge_tests::meter;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut iterations = 5;
    let mut write = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--iterations" => {
                iterations = rest
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (2..=1000).contains(n))
                    .unwrap_or_else(|| fail("--iterations takes a whole number from 2 to 1000"))
            }
            "--write" => write = true,
            other => fail(&format!(
                "unknown argument {other:?}; usage: cost [--iterations N] [--write]"
            )),
        }
    }
    // What the functions log is counted, not printed.
    meter::meter_logs();
    let flows = meter::run(iterations).await;
    let prices = Prices::load();
    let (p50, p95) = meter::stream_lag(40).await;
    let lag = format!(
        "\nEvent stream delivery lag (written → received on an open stream, default poll \
         schedule, 40 events): p50 {p50} ms, p95 {p95} ms (goal: p95 ≤ 300 ms).\n"
    );
    let idle = meter::idle_month().await;
    let table = meter::markdown(&flows, &prices) + &lag + &meter::idle_markdown(&idle);
    println!("{table}");
    if write {
        let path = neuraforge_tests::workspace_root().join("docs/cost.md");
        let doc = meter::document(&table, iterations, &flows);
        std::fs::write(&path, doc).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
        println!("wrote {}", path.display());
    }
    let mut over: Vec<String> = flows
        .iter()
        .filter(|f| !f.within_budget())
        .map(|f| f.name.to_string())
        .collect();
    let idle_total: f64 = idle.iter().map(|j| j.monthly).sum();
    if idle_total > meter::IDLE_GOAL {
        over.push(format!("the idle month ({idle_total:.3} $)"));
    }
    if p95 > 300 {
        over.push(format!("stream delivery lag (p95 {p95} ms)"));
    }
    if !over.is_empty() {
        eprintln!(
            "over budget, over the lag goal or writing a singleton key: {}",
            over.join("; ")
        );
        std::process::exit(1);
    }
}

fn fail(message: &str) -> ! {
    eprintln!("cost: {message}");
    std::process::exit(2);
}
