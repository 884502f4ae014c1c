//! The flows the cost meter runs (`infra/dev cost`), each on a fresh stack, and the
//! report it prints and writes to `docs/cost.md`.

use crate::cost::{self, Priced, Prices, Units};
use crate::recorder::{Call, Recorder};
use crate::{TestStack, get_as, submit_request, token};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// One metered flow: per-request averages over its iterations.
#[derive(Debug, Clone)]
pub struct FlowCost {
    pub name: &'static str,
    /// The goal, dollars per million requests (`None`: reported, not budgeted).
    pub budget: Option<f64>,
    pub iterations: usize,
    pub units: Units,
    pub invocations: f64,
    pub gb_seconds: f64,
    /// Bytes the function logs per request (tracing lines and EMF documents).
    pub log_bytes: f64,
    /// Of which audit lines (they go on to the audit bucket).
    pub audit_bytes: f64,
    pub priced: Priced,
    /// Partition keys written by every iteration.
    pub singletons: BTreeSet<String>,
    pub note: &'static str,
}

impl FlowCost {
    pub fn within_budget(&self) -> bool {
        self.budget.is_none_or(|b| self.priced.total() <= b) && self.singletons.is_empty()
    }
}

/// The units of a batch of calls.
pub fn units_of(
    calls: &[Call],
    shapes: &std::collections::HashMap<String, cost::TableShape>,
) -> Units {
    let mut units = Units::default();
    for call in calls {
        let op = call.operation();
        if call.target.starts_with("DynamoDB") {
            units.read_units += cost::read_units(op, &call.request, &call.response);
            for t in &call.touched {
                let wru = cost::write_units(t, shapes);
                if std::env::var_os("COST_DEBUG").is_some() {
                    eprintln!(
                        "WRITE {} {op} {wru} before={:?} after={:?}",
                        t.table,
                        t.before.as_ref().map(cost::item_size),
                        t.after.as_ref().map(cost::item_size)
                    );
                }
                units.write_units += wru;
                units.keys_written.insert(cost::partition_of(t, shapes));
                let table = shapes
                    .get(&t.table)
                    .map_or(t.table.as_str(), |s| s.logical.as_str());
                *units.writes_by.entry(format!("{table} {op}")).or_default() += wru;
            }
        } else if call.target.starts_with("AmazonSQS") {
            units.sqs_requests += cost::sqs_requests(op, &call.request, &call.response);
        } else if call.target.starts_with("AmazonS3") {
            match op {
                "GetObject" | "HeadObject" => units.s3_reads += 1.0,
                _ => units.s3_writes_and_lists += 1.0,
            }
        }
    }
    units
}

/// The memory of a function in GB, from `template.yaml`.
fn memory_gb(function: &str) -> f64 {
    let template =
        devstack::Template::load(&crate::workspace_root().join("template.yaml")).unwrap();
    let global = template.function_globals["MemorySize"]
        .as_f64()
        .unwrap_or(128.0);
    let own = template
        .resources
        .values()
        .find(|r| {
            r.properties["CodeUri"]
                .as_str()
                .is_some_and(|c| c.ends_with(function))
        })
        .and_then(|r| r.properties["MemorySize"].as_f64());
    own.unwrap_or(global) / 1024.0
}

/// A fresh stack twice over: `stack` records every call for the meter, `base` (the same
/// tables and queues) sets things up unrecorded.
struct Metered {
    base: TestStack,
    stack: TestStack,
    recorder: Recorder,
    shapes: std::collections::HashMap<String, cost::TableShape>,
}

impl Metered {
    async fn new() -> Self {
        let base = TestStack::new().await;
        let recorder = Recorder::metering(&base.sdk, &base.local.tables);
        let shapes = cost::table_shapes(&base.local.tables);
        let stack = base.with_sdk(recorder.sdk(&base.sdk));
        Self {
            base,
            stack,
            recorder,
            shapes,
        }
    }

    fn units(&self) -> Units {
        units_of(&self.recorder.take_calls(), &self.shapes)
    }
}

/// The budget file, `infra/cost/budget.yaml`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Budget {
    pub flows: std::collections::BTreeMap<String, FlowBudget>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct FlowBudget {
    /// Dollars per million requests; `None`: not budgeted.
    pub goal: Option<f64>,
    pub ceiling: Ceiling,
}

/// The units one request of a flow may use at most.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Ceiling {
    pub read_units: f64,
    pub write_units: f64,
    pub sqs_requests: f64,
    /// Bytes of audit lines (the request's record, on its way to the audit bucket).
    pub audit_bytes: f64,
}

impl Budget {
    pub fn load() -> Self {
        let path = crate::workspace_root().join("infra/cost/budget.yaml");
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn goal(&self, flow: &str) -> Option<f64> {
        self.flows.get(flow).and_then(|f| f.goal)
    }

    /// What a flow's measured units break: its ceilings, and its singleton keys.
    pub fn breaches(&self, flow: &FlowCost) -> Vec<String> {
        let mut out = Vec::new();
        let Some(budget) = self.flows.get(flow.name) else {
            return vec![format!("{}: not in infra/cost/budget.yaml", flow.name)];
        };
        let c = &budget.ceiling;
        for (what, used, ceiling) in [
            ("read units", flow.units.read_units, c.read_units),
            ("write units", flow.units.write_units, c.write_units),
            ("SQS requests", flow.units.sqs_requests, c.sqs_requests),
            ("audit line bytes", flow.audit_bytes, c.audit_bytes),
        ] {
            if used > ceiling + 1e-9 {
                out.push(format!(
                    "{}: {used:.2} {what} per request, ceiling {ceiling:.2}",
                    flow.name
                ));
            }
        }
        for key in &flow.singletons {
            out.push(format!("{}: every request writes {key}", flow.name));
        }
        out
    }
}

/// What the functions log, counted instead of written: the tracing lines (through the same
/// JSON subscriber the functions use) and the EMF documents of each invocation. Set up by
/// the cost binary with [`meter_logs`]: the subscriber and the recorder are global to a
/// process, so the test suite's runs of the flows leave logs unpriced.
struct LogMeter {
    metrics: &'static shared::telemetry::Metrics,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

static LOGS: std::sync::OnceLock<LogMeter> = std::sync::OnceLock::new();

/// A writer that only counts.
struct Counted(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counts what the functions log from now on, in this process.
pub fn meter_logs() {
    LOGS.get_or_init(|| {
        let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sink = bytes.clone();
        shared::telemetry::init_logging_to(move || Counted(sink.clone()));
        // The dimension's value is as long as a typical function's name.
        let metrics = shared::telemetry::init_metrics("submit-task");
        LogMeter { metrics, bytes }
    });
}

/// Bytes logged since the last call: tracing lines, and the EMF documents an invocation's
/// end flushes.
fn logged_bytes() -> f64 {
    LOGS.get().map_or(0.0, |m| {
        let mut emf = Vec::new();
        let _ = m.metrics.flush(&mut emf);
        let lines = m.bytes.swap(0, std::sync::atomic::Ordering::Relaxed);
        (lines as usize + emf.len()) as f64
    })
}

/// A request as API Gateway hands it over: with the caller's address (which every audit
/// record then carries). Clients' user agents vary (a 22-character one adds 37 bytes to the
/// record) and are left out.
fn from_client(request: shared::lambda_http::Request) -> shared::lambda_http::Request {
    use shared::lambda_http::RequestExt;
    use shared::lambda_http::request::RequestContext;
    let mut context = aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
    context.identity.source_ip = Some("203.0.113.10".to_string());
    request.with_request_context(RequestContext::ApiGatewayV1(context))
}

/// Runs `request` `n` times, metering each run as one Lambda invocation that lasts what
/// `request` returns (the part of it the function would do).
async fn flow<F, Fut>(
    name: &'static str,
    function: &str,
    n: usize,
    note: &'static str,
    metered: &Metered,
    mut request: F,
) -> FlowCost
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    metered.recorder.take_calls();
    logged_bytes();
    metered.stack.take_audit_bytes();
    let (mut total, mut keys, mut seconds, mut logged) = (Units::default(), Vec::new(), 0.0, 0.0);
    let mut audited = 0.0;
    for i in 0..n {
        seconds += request(i).await.as_secs_f64();
        // The audit lines are function output too (and then travel on to the bucket).
        let audit = metered.stack.take_audit_bytes() as f64;
        logged += logged_bytes() + audit;
        audited += audit;
        let units = metered.units();
        keys.push(units.keys_written.clone());
        total.add(&units);
    }
    let per = n as f64;
    let units = Units {
        read_units: total.read_units / per,
        write_units: total.write_units / per,
        sqs_requests: total.sqs_requests / per,
        s3_writes_and_lists: total.s3_writes_and_lists / per,
        s3_reads: total.s3_reads / per,
        keys_written: total.keys_written,
        writes_by: total
            .writes_by
            .iter()
            .map(|(k, v)| (k.clone(), v / per))
            .collect(),
    };
    // Billed duration rounds up to the millisecond.
    let gb_seconds = memory_gb(function) * ((seconds / per) * 1000.0).ceil() / 1000.0;
    let prices = Prices::load();
    FlowCost {
        name,
        budget: Budget::load().goal(name),
        iterations: n,
        priced: cost::price(
            &units,
            1.0,
            gb_seconds,
            logged / per,
            audited / per,
            &prices,
        ),
        log_bytes: logged / per,
        audit_bytes: audited / per,
        units,
        invocations: 1.0,
        gb_seconds,
        singletons: cost::singletons(&keys),
        note,
    }
}

/// Every flow of the budget table, `n` requests each.
pub async fn run(n: usize) -> Vec<FlowCost> {
    let mut out = Vec::new();

    // An audited read of a finished task.
    let m = Metered::new().await;
    let id = m.stack.submit("alice", README_PROMPT).await;
    m.stack.deliver_once(30).await;
    let (api, audited) = (m.stack.get_api(), m.stack.auditor());
    let id = id.to_string();
    out.push(
        flow(
            "GET /api/v1/tasks/{id}",
            "get-task",
            n,
            "audited; each request by another observer",
            &m,
            |i| {
                let (api, audited, id) = (&api, &audited, &id);
                async move {
                    let who = format!("observer-{i}");
                    let started = Instant::now();
                    let r = audited
                        .respond(api, from_client(get_as(&who, &["observer"], "task_id", id)))
                        .await;
                    assert_eq!(r.status(), 200);
                    started.elapsed()
                }
            },
        )
        .await,
    );

    // Submissions, without and with an idempotency key, under the template's submission
    // limit (the test stacks raise it; the ledger's writes depend on it).
    let m = Metered::new().await;
    let capacity = "RATE_LIMIT__TASK_SUBMISSION__CAPACITY";
    let deployed = m.stack.local.function("submit-task").unwrap().environment[capacity].clone();
    let api = m
        .stack
        .submit_api_with(m.stack.settings_with(&[(capacity, &deployed)]));
    let audited = m.stack.auditor();
    out.push(
        flow(
            "POST /api/v1/submit_task",
            "submit-task",
            n,
            "audited; each by another submitter; no Idempotency-Key",
            &m,
            |i| {
                let (api, audited) = (&api, &audited);
                async move {
                    let body = format!(r#"{{"prompt":"{README_PROMPT_TEXT} {i}"}}"#);
                    let who = token(&format!("submitter-{i}"), &["submitter"]);
                    let started = Instant::now();
                    let r = audited
                        .respond(api, from_client(submit_request(&who, &body, None)))
                        .await;
                    assert_eq!(r.status(), 200);
                    started.elapsed()
                }
            },
        )
        .await,
    );
    out.push(
        flow(
            "POST /api/v1/submit_task (Idempotency-Key)",
            "submit-task",
            n,
            "audited; each by another submitter, with a key",
            &m,
            |i| {
                let (api, audited) = (&api, &audited);
                async move {
                    let body = format!(r#"{{"prompt":"{README_PROMPT_TEXT} keyed {i}"}}"#);
                    let who = token(&format!("keyed-submitter-{i}"), &["submitter"]);
                    let key = format!("key-{i}");
                    let started = Instant::now();
                    let r = audited
                        .respond(api, from_client(submit_request(&who, &body, Some(&key))))
                        .await;
                    assert_eq!(r.status(), 200);
                    started.elapsed()
                }
            },
        )
        .await,
    );

    // One task through the worker: the queue's delivery and the run (submit priced above).
    let m = Metered::new().await;
    let worker = m.stack.worker();
    out.push(
        flow(
            "one task through the worker",
            "task-worker",
            n,
            "README prompt, built-in backend; the submit is the row above",
            &m,
            |_| {
                let (m, worker) = (&m, &worker);
                async move {
                    m.base.submit("alice", README_PROMPT).await;
                    // The submission is priced in its own row: neither its calls nor its logs here.
                    m.recorder.take_calls();
                    logged_bytes();
                    let started = Instant::now();
                    let (_, batch) = m.stack.deliver_once_with(worker, 30).await;
                    assert!(batch.batch_item_failures.is_empty());
                    started.elapsed()
                }
            },
        )
        .await,
    );

    // A new task onto the queue: the tasks table's stream hands it to the enqueuer (one
    // invocation per task: the least batching there is; at load a batch carries many).
    let m = Metered::new().await;
    let enqueuer = m.stack.enqueuer_with(m.stack.queue());
    out.push(
        flow(
            "a new task onto the queue",
            "task-enqueuer",
            n,
            "the stream's INSERT of the submission above, alone in its batch",
            &m,
            |_| {
                let (m, enqueuer) = (&m, &enqueuer);
                async move {
                    m.base.submit("alice", README_PROMPT).await;
                    let event = m.stack.new_task_records().await;
                    // The submission is priced in its own row: neither its calls nor its logs here.
                    m.recorder.take_calls();
                    logged_bytes();
                    let started = Instant::now();
                    let response = enqueuer.handle(event).await;
                    assert!(response.batch_item_failures.is_empty());
                    started.elapsed()
                }
            },
        )
        .await,
    );

    // A stream following a task that does not move, for two seconds.
    let m = Metered::new().await;
    let waiting = m
        .base
        .submit("alice", r#"{"prompt":"nobody runs this"}"#)
        .await
        .to_string();
    let api = m.stack.events_api(shared::tasks::stream::StreamConfig {
        max_duration: Duration::from_secs(2),
        ..Default::default()
    });
    let audited = m.stack.auditor();
    out.push(
        flow(
            "one SSE stream, 2 s",
            "task-events",
            n,
            "a queued task (every poll finds nothing); each stream by another observer",
            &m,
            |i| {
                let (api, audited, waiting) = (&api, &audited, &waiting);
                async move {
                    let who = format!("observer-{i}");
                    let started = Instant::now();
                    let req = from_client(get_as(&who, &["observer"], "task_id", waiting));
                    let mut body = audited.respond_streaming(api, req).await.into_body();
                    while crate::next_chunk(&mut body).await.is_some() {}
                    started.elapsed()
                }
            },
        )
        .await,
    );
    // v1's history: the recent list (a page of 5 settled tasks), and a transcript written.
    let m = Metered::new().await;
    for _ in 0..5 {
        m.base.submit("alice", README_PROMPT).await;
    }
    m.base.deliver_once(30).await;
    let (api, audited) = (m.stack.history_recent_api(), m.stack.auditor());
    out.push(
        flow(
            "GET /api/v1/history/recent",
            "history-recent",
            n,
            "audited; a page of 5 settled tasks: the index query and one batch read",
            &m,
            |_| {
                let (api, audited) = (&api, &audited);
                async move {
                    let req = from_client(get_as("alice", &["submitter"], "x", "y"));
                    let started = Instant::now();
                    let r = audited.respond(api, req).await;
                    assert_eq!(r.status(), 200);
                    assert_eq!(crate::json_body(&r).as_array().map(Vec::len), Some(5));
                    started.elapsed()
                }
            },
        )
        .await,
    );
    let mut own = Vec::new();
    for i in 0..n {
        own.push(
            m.base
                .submit(&format!("writer-{i}"), README_PROMPT)
                .await
                .to_string(),
        );
    }
    let (api, audited) = (m.stack.transcript_api(), m.stack.auditor());
    out.push(
        flow(
            "PUT /api/v1/history/{id}/transcript",
            "history-transcript",
            n,
            "audited, rate limited; each by another submitter on their own task; 2 short messages",
            &m,
            |i| {
                let (api, audited, own) = (&api, &audited, &own);
                async move {
                    let body = r#"{"messages":[{"role":"user","content":"How did revenue do this quarter?"},{"role":"assistant","content":"Revenue grew 15 percent.","agent":"finance_agent"}]}"#;
                    let req = crate::request(
                        "PUT",
                        "/x",
                        Some(&token(&format!("writer-{i}"), &["submitter"])),
                        Some(body),
                    )
                    .path_param("task_id", &own[i])
                    .build();
                    let req = from_client(req);
                    let started = Instant::now();
                    let r = audited.respond(api, req).await;
                    assert_eq!(r.status(), 200);
                    started.elapsed()
                }
            },
        )
        .await,
    );

    // Review tickets opening (the worker's part of a review): no aggregates item is hot.
    let m = Metered::new().await;
    let tickets = m.stack.reviews();
    out.push(
        flow(
            "a review ticket opens",
            "task-worker",
            n,
            "the ticket, its marker, its history and its aggregates shard, in one transaction",
            &m,
            |i| {
                let tickets = &tickets;
                async move {
                    let ticket = crate::seeded_ticket(i as i64);
                    let started = Instant::now();
                    tickets.open(&ticket).await.unwrap();
                    started.elapsed()
                }
            },
        )
        .await,
    );
    out
}

/// The README's example prompt.
const README_PROMPT_TEXT: &str =
    "Revenue this quarter was 1200 * 1.15 thousand. Email the summary to cfo@example.com.";
const README_PROMPT: &str = r#"{"prompt":"Revenue this quarter was 1200 * 1.15 thousand. Email the summary to cfo@example.com."}"#;

/// The report as Markdown: one row per flow, a column per cost component.
pub fn markdown(flows: &[FlowCost], prices: &Prices) -> String {
    let mut md = String::new();
    md.push_str("| flow | RRU | WRU | SQS req | Lambda GB-s | log bytes (audit) | DynamoDB writes $ | DynamoDB reads $ | SQS $ | Lambda req $ | Lambda GB-s $ | Logs $ | audit path $ | total $/1M | goal $/1M | singleton keys |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for f in flows {
        let p = &f.priced;
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.4} | {:.0} ({:.0}) | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | **{:.2}** | {} | {} |\n",
            f.name,
            f.units.read_units,
            f.units.write_units,
            f.units.sqs_requests,
            f.gb_seconds,
            f.log_bytes,
            f.audit_bytes,
            p.dynamodb_writes,
            p.dynamodb_reads,
            p.sqs,
            p.lambda_requests,
            p.lambda_compute,
            p.logs,
            p.audit_path,
            p.total(),
            f.budget.map_or("–".into(), |b| format!("{b:.2}")),
            if f.singletons.is_empty() {
                "none".to_string()
            } else {
                f.singletons.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            },
        ));
    }
    md.push_str(&format!(
        "\nPrices: {} list prices as of {} (`infra/cost/prices.yaml`); API Gateway's fee aside.\n",
        prices.region, prices.as_of
    ));
    md.push_str("\nWhere the write units go (per request):\n\n| flow | table and operation: WRU |\n|---|---|\n");
    for f in flows {
        let parts: Vec<String> = f
            .units
            .writes_by
            .iter()
            .map(|(what, units)| format!("{what}: {units:.1}"))
            .collect();
        let parts = match parts.is_empty() {
            true => "none".to_string(),
            false => parts.join("; "),
        };
        md.push_str(&format!("| {} | {parts} |\n", f.name));
    }
    md
}

/// `docs/cost.md`: the measured table with the rules it was computed by.
pub fn document(table: &str, iterations: usize, flows: &[FlowCost]) -> String {
    let now = |name: &str| {
        flows
            .iter()
            .find(|f| f.name == name)
            .map_or("–".to_string(), |f| format!("{:.2}", f.priced.total()))
    };
    // Measured by this meter on the code before issue 12, and what changed since.
    let before = [
        (
            "GET /api/v1/tasks/{id}",
            "4.56, singleton `AuditTable/head#get-task`",
            "audit: a line of the function's output (CloudWatch Logs, Firehose, S3 with Object Lock; sealed off the request path), no write; task and events read eventually consistent, at once",
        ),
        (
            "POST /api/v1/submit_task",
            "7.77, singleton `AuditTable/head#submit-task`",
            "the task's one conditional put (the tasks table's stream enqueues it: no outbox marker, no SendMessage); the submission limit's counter lists the task for v1's history (no index entry); the audit record a line",
        ),
        (
            "POST /api/v1/submit_task (Idempotency-Key)",
            "10.30",
            "as above; the key names the task id, so the task's put is the key's claim (no idempotency item)",
        ),
        (
            "one task through the worker",
            "14.91",
            "a run's events in as few pages as its slow steps allow, no memos for the deterministic backend and tools, no stored dossier or report, snapshots and decisions kept once (as events), the run item written once; the claim removes no outbox marker (no index delete)",
        ),
        (
            "a new task onto the queue",
            "– (the submission sent the message: counted in its row)",
            "the SendMessage moved off the request path: the tasks table's stream (free to Lambda) hands new tasks to the enqueuer, ten messages to a call at load",
        ),
        (
            "one SSE stream, 2 s",
            "9.51, singleton `AuditTable/head#task-events`",
            "no stream slot written by a stream shorter than 5 s, the status read once while idle; the audit record a line",
        ),
        (
            "a review ticket opens",
            "6.57, every change on `ReviewsTable/stats#all`",
            "one of 16 aggregate shards; the history item also in the `changes` index (the review event stream)",
        ),
    ];
    let mut history = String::from(
        "| flow | before (one hash chain per route) | now | what changed |\n|---|---|---|---|\n",
    );
    for (name, was, why) in before {
        history.push_str(&format!("| {name} | {was} | {} | {why} |\n", now(name)));
    }
    format!(
        "# What a request costs\n\n\
         Written by `infra/dev cost` (the cost meter, `tests/src/cost.rs` and `tests/src/meter.rs`):\n\
         each flow runs {iterations} times on a fresh local stack through a recording SDK client;\n\
         every AWS call it makes is priced per request, at a million requests.\n\n\
         {table}\n\
         The goals and each flow's ceilings (the units it may use today, which\n\
         `tests/it/cost.rs` holds it to, with no partition key written by every request) are in\n\
         `infra/cost/budget.yaml`.\n\n\
         ## Before and after\n\n\
         Measured by this meter, dollars per million requests:\n\n\
         {history}\n\
         ## How the units are counted\n\n\
         - DynamoDB writes: 1 WRU per 1 KB (rounded up) of the larger of the item before and after\n\
           (read around each write through an unrecorded client); a failed condition still costs it;\n\
           each global secondary index the item is in (or leaves) adds a write sized by its\n\
           projection (a delete and a put when its key changes); transactions cost double.\n\
         - DynamoDB reads: 1 RRU per 4 KB of the items returned, rounded up per request; half for\n\
           an eventually consistent read.\n\
         - SQS: one request per call and per 64 KB chunk of its payload (the event source\n\
           mapping's receive and delete of a task message are counted with the worker).\n\
         - Lambda: one request per flow request; GB-s from the function's memory in\n\
           `template.yaml` and the handler's measured time in-process against moto (a debug\n\
           build: an upper bound), rounded up to the millisecond.\n\
         - CloudWatch custom metrics (idle month): $0.30 a month for each gauge a steady idle\n\
           tick sends.\n\
         - CloudWatch Logs: the bytes the function writes per request (its JSON tracing lines\n\
           through the functions' own subscriber, and the EMF documents the invocation's end\n\
           flushes, and the request's audit line), at the ingestion price. Lambda's own\n\
           START/END/REPORT lines are off (`SystemLogLevel: WARN`).\n\
         - The audit path: the audit line's bytes again at Firehose's vended-logs ingestion\n\
           rate (an upper bound, `infra/cost/prices.yaml`), and S3 requests by class (the\n\
           sealer's listings and reads; Firehose's few objects an hour are not per request).\n\
         - The requests carry a caller's address (API Gateway's `sourceIp`, in every audit\n\
           record) and no user agent (clients' vary: a 22-character one adds 37 bytes).\n\
         - Not yet counted: log storage, X-Ray, API Gateway.\n\
         - Singleton keys: partition keys written by every request of a flow; each caps the\n\
           flow's throughput (one partition takes about 1,000 WRU/s) and is a failure.\n"
    )
}

/// Delivery lag of the event stream: from an event's write to its arrival on an open
/// stream (in-process, the default poll schedule), as milliseconds at p50 and p95.
pub async fn stream_lag(samples: usize) -> (u64, u64) {
    use shared::tasks::{Read, TaskEvent, run_id_for};
    let stack = TestStack::new().await;
    let id = stack
        .submit("alice", r#"{"prompt":"a run written by hand"}"#)
        .await;
    let api = stack.events_api(shared::tasks::stream::StreamConfig::default());
    let pipeline = crate::pipeline();
    let req = get_as("alice", &["submitter"], "task_id", &id.to_string());
    let mut body = pipeline.respond_streaming(&api, req).await.into_body();
    crate::next_chunk(&mut body).await; // the retry hint
    let runs = stack.runs();
    let mut lags = Vec::new();
    for sequence in 1..=samples as u64 {
        // Writes land at any point of the poll cycle, as they do in a run.
        tokio::time::sleep(Duration::from_millis(37 * (sequence % 7))).await;
        let payload = serde_json::json!({ "n": sequence });
        let at = shared::time::now_millis();
        let event = TaskEvent::new(
            id,
            Some(run_id_for(id)),
            sequence,
            "agent_started",
            payload,
            at,
        );
        let written = Instant::now();
        runs.append_event(&event).await.unwrap();
        loop {
            let chunk = crate::next_chunk(&mut body)
                .await
                .expect("the stream stays open");
            if chunk.starts_with(&format!("id: {sequence}\n")) {
                break;
            }
        }
        lags.push(written.elapsed().as_millis() as u64);
    }
    let _ = runs.events_after(id, 0, 1, Read::Recent).await;
    lags.sort_unstable();
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95))
}

/// One scheduled job's month with no traffic: what a tick uses, and how many ticks.
#[derive(Debug, Clone)]
pub struct IdleJob {
    pub function: String,
    pub ticks_per_month: f64,
    pub units: Units,
    pub gb_seconds: f64,
    /// Gauges a steady idle tick sends: each would be a CloudWatch custom metric all month.
    pub gauges_sent: usize,
    /// Dollars per month.
    pub monthly: f64,
}

/// Every scheduled function's ticks over a 30-day month on an empty stack (its schedule
/// from `template.yaml`), priced: the second tick of an environment (the first of a new
/// one sends its gauges once, whatever they are), with the custom metrics it would keep
/// alive. Log bytes are not counted.
pub async fn idle_month() -> Vec<IdleJob> {
    use shared::runtime::ScheduledJob;
    let template =
        devstack::Template::load(&crate::workspace_root().join("template.yaml")).unwrap();
    let prices = Prices::load();
    let mut out = Vec::new();
    for (_, function) in template.of_kind("AWS::Serverless::Function") {
        let binary = function.metadata["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let every = devstack::template::events(function)
            .unwrap()
            .into_iter()
            .find_map(|e| match e {
                devstack::template::EventSource::Schedule { every_seconds } => Some(every_seconds),
                _ => None,
            });
        let Some(every_seconds) = every else { continue };
        let m = Metered::new().await;
        let settings = m.stack.settings();
        // The first tick warms the environment up; the second, steady one is priced.
        let warmed = || {
            m.recorder.take_calls();
            logged_bytes();
            Instant::now()
        };
        let (gauges_sent, started) = match binary.as_str() {
            "queue-health" => {
                let job = shared::queue_health::QueueHealth::from_settings(&m.stack.sdk, &settings)
                    .unwrap();
                job.run_once().await.unwrap();
                let started = warmed();
                let report = job.run_once().await.unwrap();
                let sent = match report.reported {
                    true => shared::queue_health::readings(&report.queues).len(),
                    false => 0,
                };
                (sent, started)
            }
            "review-backlog-metrics" => {
                let job = shared::reviews::metrics::BacklogMetrics::new(m.stack.reviews());
                job.run_once().await.unwrap();
                let started = warmed();
                let report = job.run_once().await.unwrap();
                let sent = match report.reported {
                    true => report.backlog.readings().len(),
                    false => 0,
                };
                (sent, started)
            }
            "audit-sealer" => {
                let job = shared::audit::seal::Sealer::from_settings(&m.stack.sdk, &settings)
                    .await
                    .unwrap();
                job.run_once().await.unwrap();
                let started = warmed();
                job.run_once().await.unwrap();
                (0, started)
            }
            other => panic!("no idle tick for scheduled function {other}: add one to meter.rs"),
        };
        let seconds = started.elapsed().as_secs_f64();
        let units = m.units();
        let ticks = 30.0 * 86_400.0 / every_seconds as f64;
        let gb_seconds = memory_gb(&binary) * (seconds * 1000.0).ceil() / 1000.0;
        let per_tick = cost::price(&units, 1.0, gb_seconds, logged_bytes(), 0.0, &prices).total()
            / 1_000_000.0;
        out.push(IdleJob {
            function: binary,
            ticks_per_month: ticks,
            units,
            gb_seconds,
            gauges_sent,
            monthly: per_tick * ticks
                + gauges_sent as f64 * prices.cloudwatch.custom_metric_per_month,
        });
    }
    out
}

/// The idle month as Markdown.
pub fn idle_markdown(jobs: &[IdleJob]) -> String {
    let mut md = String::from(
        "\n## An idle month\n\nNo traffic for 30 days: what the scheduled functions still do \
         (a steady tick: an environment's first run sends its gauges once, whatever they are).\n\n\
         | function | ticks | RRU / tick | WRU / tick | SQS req / tick | S3 req / tick | Lambda GB-s / tick | gauges sent / tick | $ / month |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for j in jobs {
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.4} | {} | {:.3} |\n",
            j.function,
            j.ticks_per_month,
            j.units.read_units,
            j.units.write_units,
            j.units.sqs_requests,
            j.units.s3_writes_and_lists + j.units.s3_reads,
            j.gb_seconds,
            j.gauges_sent,
            j.monthly
        ));
    }
    let total: f64 = jobs.iter().map(|j| j.monthly).sum();
    md.push_str(&format!(
        "| **total** | | | | | | | | **{total:.3}** (goal ≤ {IDLE_GOAL:.2}; custom metrics at \
         $0.30 each a month and each tick's log lines are in; storage is not) |\n"
    ));
    md
}

/// The idle month's goal, dollars (issue 12).
pub const IDLE_GOAL: f64 = 0.10;
