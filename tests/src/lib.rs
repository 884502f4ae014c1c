//! The test harness: a real moto server started on a free port (once for the test
//! binary, `tests/it`), and for each test a fresh stack of tables and queues provisioned
//! from `template.yaml` under a unique name. No mocks, no in-memory stand-ins.

pub mod chat_server;
pub mod cost;
pub mod meter;
pub mod recorder;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use devstack::provision::LocalStack;
use devstack::{Template, provision};
use shared::auth::{AuthConfig, Authenticator};
use shared::config::Settings;
use shared::http::{ApiHandler, Pipeline};
use shared::lambda_http::http::header;
use shared::lambda_http::{Body, Request, RequestExt, Response};
use shared::orchestrator::agents::AnyBackend;
use shared::orchestrator::engine::Orchestrator;
use shared::orchestrator::settings::metadata_choices;
use shared::queue::TaskQueue;
use shared::reviews::store::ReviewStore;
use shared::tasks::runs::{RunStore, RunTables};
use shared::tasks::status::GetTaskApi;
use shared::tasks::store::{TaskStore, TaskTables};
use shared::tasks::submit::{SubmitConfig, SubmitTaskApi};
use shared::tasks::worker::{TaskWorker, WorkerConfig};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The key the test stacks' audit sealer signs digests with.
pub const TEST_AUDIT_KEY: &str = "test-audit-signing-key";

/// The HS256 secret of the test stacks: the published sample secret, so the sample events verify.
pub const TEST_SECRET: &str = shared::auth::SAMPLE_SECRET;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The project venv's Python (`infra/dev test` sets NEURAFORGE_PYTHON).
pub fn python() -> PathBuf {
    let configured = std::env::var_os("NEURAFORGE_PYTHON").map(PathBuf::from);
    workspace_root().join(configured.unwrap_or_else(|| ".venv/bin/python".into()))
}

struct Moto {
    endpoint: String,
    // Held open: when the test process exits, stdin closes and moto stops.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The moto endpoint of this test binary, started on first use.
pub fn moto_endpoint() -> &'static str {
    &MOTO
        .get_or_init(|| {
            let mut child = Command::new(python())
                .arg(workspace_root().join("infra/local/moto_serve.py"))
                .args(["--port", "0", "--watch-stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting moto: run `infra/dev test` once so .venv exists");
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .expect("reading moto's port");
            let port: u16 = line.trim().parse().expect("moto printed its port");
            Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
                _stdin: Mutex::new(child.stdin.take().unwrap()),
                _child: Mutex::new(child),
            }
        })
        .endpoint
}

/// SDK configuration for the test moto: the SDK's own endpoint override, local credentials.
pub fn sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto_endpoint())
        .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
            aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .build()
}

/// One test's stack: fresh tables and queues, and the functions' settings from the template.
pub struct TestStack {
    pub sdk: SdkConfig,
    pub local: LocalStack,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    env: BTreeMap<String, String>,
    /// The stand-in for the tasks table's event source mapping, shared by every view of
    /// the stack ([`TestStack::with_sdk`]) and never through a recording SDK.
    tasks_stream: std::sync::Arc<TasksStream>,
    /// The audit lines the stack's audited pipelines wrote and [`TestStack::ship_audit`]
    /// has not shipped yet (every view of the stack shares them).
    audit_lines: shared::audit::Collected,
}

/// Reads the tasks table's stream and enqueues what it announces, with an unrecorded SDK.
struct TasksStream {
    sdk: SdkConfig,
    reader: tokio::sync::Mutex<Option<devstack::streams::StreamReader>>,
}

impl TestStack {
    pub async fn new() -> Self {
        let sdk = sdk_config();
        let template = Template::load(&workspace_root().join("template.yaml")).unwrap();
        let name = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let local = provision(&sdk, &template, &name)
            .await
            .expect("provisioning the test stack");
        let mut env = local.merged_environment();
        // The functions read the secret from SSM at cold start (`shared::auth::load`); the
        // handlers the tests build directly take it from the settings.
        let parameter = format!("/{name}/jwt-secret");
        devstack::provision::store_signing_secret(&sdk, &parameter, TEST_SECRET)
            .await
            .expect("storing the signing secret");
        env.insert(shared::auth::SECRET_PARAMETER_SETTING.into(), parameter);
        let audit_key = format!("/{name}/audit-signing-key");
        devstack::provision::store_signing_secret(&sdk, &audit_key, TEST_AUDIT_KEY)
            .await
            .expect("storing the audit signing key");
        env.insert(shared::audit::seal::KEY_SETTING.into(), audit_key);
        env.insert("AUTH__JWT_SECRET_KEY".into(), TEST_SECRET.into());
        env.insert("AWS_ENDPOINT_URL".into(), moto_endpoint().into());
        // Tests submit many tasks as one principal; the rate-limit tests set their own limits.
        env.insert(
            "RATE_LIMIT__TASK_SUBMISSION__CAPACITY".into(),
            "10000".into(),
        );
        Self {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            tasks_stream: std::sync::Arc::new(TasksStream {
                sdk: sdk.clone(),
                reader: Default::default(),
            }),
            audit_lines: Default::default(),
            sdk,
            local,
            env,
        }
    }

    /// The functions' settings, as the template gives them, with `overrides` on top.
    pub fn settings_with(&self, overrides: &[(&str, &str)]) -> Settings<'static> {
        let mut env = self.env.clone();
        for (k, v) in overrides {
            env.insert(k.to_string(), v.to_string());
        }
        Settings::new(move |name| env.get(name).cloned())
    }

    /// The same stack seen through another SDK configuration (a recording one, say):
    /// every client the helpers build then uses it.
    pub fn with_sdk(&self, sdk: SdkConfig) -> TestStack {
        TestStack {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
            local: self.local.clone(),
            env: self.env.clone(),
            tasks_stream: self.tasks_stream.clone(),
            audit_lines: self.audit_lines.clone(),
        }
    }

    pub fn settings(&self) -> Settings<'static> {
        self.settings_with(&[])
    }

    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    pub fn store(&self) -> TaskStore {
        TaskStore::new(
            &self.sdk,
            TaskTables::from_settings(&self.settings()).unwrap(),
        )
    }

    pub fn queue(&self) -> TaskQueue {
        TaskQueue::from_settings(&self.sdk, &self.settings()).unwrap()
    }

    pub fn queue_url(&self) -> &str {
        &self.local.queues["TasksQueue"].url
    }

    pub fn dlq_url(&self) -> &str {
        &self.local.queues["TasksDeadLetterQueue"].url
    }

    pub fn submit_api(&self) -> SubmitTaskApi {
        self.submit_api_with(self.settings())
    }

    pub fn submit_api_with(&self, settings: Settings<'static>) -> SubmitTaskApi {
        SubmitTaskApi {
            ledger: shared::tasks::ledger::SubmissionLedger::from_settings(&self.sdk, &settings)
                .unwrap(),
            store: self.store(),
            config: SubmitConfig::from_settings(&settings, metadata_choices()).unwrap(),
        }
    }

    /// The task enqueuer, sending to `queue`.
    pub fn enqueuer_with(&self, queue: TaskQueue) -> shared::tasks::enqueue::TaskEnqueuer {
        shared::tasks::enqueue::TaskEnqueuer { queue }
    }

    /// The tasks table's stream records written since the last read, as Lambda's event
    /// (every record: the filter is the event source mapping's, see [`Self::enqueue_new_tasks`]).
    pub async fn new_task_records(&self) -> aws_lambda_events::event::dynamodb::Event {
        let mut reader = self.tasks_stream.reader.lock().await;
        if reader.is_none() {
            let table = &self.local.tables["TasksTable"];
            *reader = Some(
                devstack::streams::StreamReader::open(&self.tasks_stream.sdk, table)
                    .await
                    .unwrap(),
            );
        }
        let records = reader.as_mut().unwrap().read().await.unwrap();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    /// What the event source mapping does with the tasks table's stream: hands the new tasks
    /// to the enqueuer, which puts them on the tasks queue. The queue helpers below run it
    /// first, so a submitted task is on the queue by the time a test looks.
    pub async fn enqueue_new_tasks(&self) {
        let event = self.new_task_records().await;
        let queue = TaskQueue::new(&self.tasks_stream.sdk, self.queue_url());
        let response = self.enqueuer_with(queue).handle(event).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "the enqueuer failed: {response:?}"
        );
    }

    pub fn runs(&self) -> RunStore {
        RunStore::new(
            &self.sdk,
            RunTables::from_settings(&self.settings()).unwrap(),
        )
    }

    pub fn get_api(&self) -> GetTaskApi {
        GetTaskApi {
            reads: self.reads(),
            store: self.store(),
            runs: self.runs(),
        }
    }

    /// The audit log of a function of this stack: its lines wait for [`Self::ship_audit`].
    pub fn audit_log(&self) -> shared::audit::AuditLog {
        self.audit_lines.log()
    }

    /// Bytes of the audit lines written since the last ship or take (each with its newline),
    /// dropped: the cost meter's count.
    pub fn take_audit_bytes(&self) -> usize {
        self.audit_lines.take().iter().map(|l| l.len() + 1).sum()
    }

    /// The stack's audit bucket.
    pub fn audit_store(&self) -> shared::audit::store::AuditStore {
        shared::audit::store::AuditStore::new(&self.sdk, &self.local.buckets["AuditBucket"])
    }

    /// What the log subscription and Firehose do in AWS: the audit lines written since the
    /// last call, as one record object (its key; `None` if there were none).
    pub async fn ship_audit(&self) -> Option<String> {
        let lines = self.audit_lines.take();
        if lines.is_empty() {
            return None;
        }
        let now = shared::time::now_millis();
        Some(
            self.audit_store()
                .put_records("test", &lines, now)
                .await
                .unwrap(),
        )
    }

    /// Every audit record in the bucket, in the order written, after shipping what is
    /// waiting.
    pub async fn audit_records(&self) -> Vec<shared::audit::AuditRecord> {
        self.ship_audit().await;
        let mut records: Vec<shared::audit::AuditRecord> = self
            .audit_store()
            .all_record_objects()
            .await
            .unwrap()
            .iter()
            .flat_map(|o| o.lines.iter())
            .map(|l| shared::audit::record_of_line(l).expect("an audit line"))
            .collect();
        records.sort_by_key(|r| r.time);
        records
    }

    /// The audit records one function wrote, in the order written.
    pub async fn audit_records_of(&self, function: &str) -> Vec<shared::audit::AuditRecord> {
        let mut records = self.audit_records().await;
        records.retain(|r| r.function == function);
        records
    }

    /// The stack's authenticator, as a function's settings give it.
    pub fn authenticator(&self) -> Authenticator {
        Authenticator::from_settings(&self.settings()).unwrap()
    }

    /// The pipeline of an audited route: callers authenticated, every request recorded.
    pub fn auditor(&self) -> Pipeline {
        Pipeline::audited(self.authenticator(), self.audit_log())
    }

    /// The pipeline of a route that authenticates but does not audit.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::authenticated(self.authenticator())
    }

    /// The read limiter of a function, as its settings give it.
    pub fn reads(&self) -> shared::ratelimit::ReadLimiter {
        shared::ratelimit::ReadLimiter::from_settings(&self.settings()).unwrap()
    }

    /// Every item of the stack's table `logical` (a test's small table: one scan).
    pub async fn scan(
        &self,
        logical: &str,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.dynamodb
            .scan()
            .table_name(&self.local.tables[logical])
            .send()
            .await
            .unwrap()
            .items()
            .to_vec()
    }

    /// The task-events handler (not audited) with the given stream settings.
    pub fn events_api(
        &self,
        config: shared::tasks::stream::StreamConfig,
    ) -> shared::tasks::stream::TaskEventsApi {
        shared::tasks::stream::TaskEventsApi {
            reads: self.reads(),
            slots: self.slots(),
            tasks: self.store(),
            runs: self.runs(),
            config,
        }
    }

    /// A dossier route's handler.
    pub fn dossier_api(
        &self,
        format: shared::reviews::dossier::DossierFormat,
    ) -> shared::reviews::dossier::DossierApi {
        shared::reviews::dossier::DossierApi {
            format,
            reads: self.reads(),
            tasks: self.store(),
            runs: self.runs(),
            tickets: self.reviews(),
        }
    }

    /// The stream slots of the task-events function, as its settings give them.
    pub fn slots(&self) -> shared::ratelimit::StreamSlots {
        shared::ratelimit::StreamSlots::from_settings(&self.sdk, &self.settings()).unwrap()
    }

    pub fn get_run_api(&self) -> shared::tasks::runs_api::GetRunApi {
        shared::tasks::runs_api::GetRunApi {
            reads: self.reads(),
            tasks: self.store(),
            runs: self.runs(),
        }
    }

    pub fn history_recent_api(&self) -> shared::tasks::history::RecentApi {
        shared::tasks::history::RecentApi::from_settings(&self.sdk, &self.settings()).unwrap()
    }

    pub fn history_results_api(&self) -> shared::tasks::history::ResultsApi {
        shared::tasks::history::ResultsApi::from_settings(&self.sdk, &self.settings()).unwrap()
    }

    pub fn transcript_api(&self) -> shared::tasks::history::TranscriptApi {
        shared::tasks::history::TranscriptApi::from_settings(&self.sdk, &self.settings()).unwrap()
    }

    /// The answer of the (not streaming) function serving `route`, through the test pipeline.
    pub async fn call(&self, route: &shared::routes::Route, request: Request) -> Response<Body> {
        use shared::reviews::api::TicketAction;
        use shared::reviews::dossier::DossierFormat;
        let ticket = |action| self.ticket_api(action);
        match route.function {
            "submit-task" => respond(&self.submit_api(), request).await,
            "get-task" => respond(&self.get_api(), request).await,
            "get-run" => respond(&self.get_run_api(), request).await,
            "history-recent" => respond(&self.history_recent_api(), request).await,
            "history-results" => respond(&self.history_results_api(), request).await,
            "history-transcript" => respond(&self.transcript_api(), request).await,
            "dossier-json" => respond(&self.dossier_api(DossierFormat::Json), request).await,
            "dossier-markdown" => {
                respond(&self.dossier_api(DossierFormat::Markdown), request).await
            }
            "list-reviews" => {
                let api = shared::reviews::api::ListTicketsApi {
                    reads: self.reads(),
                    tickets: self.reviews(),
                };
                respond(&api, request).await
            }
            "review-metrics" => {
                let api = shared::reviews::metrics::ReviewMetricsApi {
                    reads: self.reads(),
                    tickets: self.reviews(),
                    sla_minutes: 120,
                };
                respond(&api, request).await
            }
            "get-review" => respond(&ticket(TicketAction::Get), request).await,
            "assign-review" => respond(&ticket(TicketAction::Assign), request).await,
            "unassign-review" => respond(&ticket(TicketAction::Unassign), request).await,
            "add-review-note" => respond(&ticket(TicketAction::AddNote), request).await,
            "resolve-review" => respond(&ticket(TicketAction::Resolve), request).await,
            "health" => respond(&shared::health::LivenessApi, request).await,
            "readiness" => {
                let api = shared::health::ReadinessApi {
                    store: self.store(),
                    queue: self.queue(),
                    timeout: std::time::Duration::from_secs(2),
                };
                respond(&api, request).await
            }
            other => panic!("{other} streams: call it with respond_streaming"),
        }
    }

    pub fn ticket_api(
        &self,
        action: shared::reviews::api::TicketAction,
    ) -> shared::reviews::api::TicketApi {
        shared::reviews::api::TicketApi::from_settings(action, &self.sdk, &self.settings()).unwrap()
    }

    /// Submits a task the guardrails send to review and returns its open ticket's id.
    pub async fn open_ticket(&self) -> String {
        let task = self
            .submit(
                "alice",
                r#"{"prompt":"Refund card 4111 1111 1111 1111 by wire transfer"}"#,
            )
            .await;
        self.deliver_once(30).await;
        let open = self
            .reviews()
            .by_status(shared::reviews::TicketStatus::Open, 100)
            .await
            .unwrap();
        open.into_iter()
            .find(|t| t.task_id == task)
            .expect("a ticket for the task")
            .ticket_id
            .to_string()
    }

    pub fn orchestrator(&self) -> Orchestrator<AnyBackend> {
        Orchestrator::from_settings(&self.sdk, &self.settings()).unwrap()
    }

    pub fn worker(&self) -> TaskWorker<Orchestrator<AnyBackend>, ReviewStore> {
        self.worker_with(self.orchestrator())
    }

    pub fn worker_with<E: shared::tasks::executor::TaskExecutor>(
        &self,
        executor: E,
    ) -> TaskWorker<E, ReviewStore> {
        TaskWorker {
            store: self.store(),
            executor,
            config: WorkerConfig::from_settings(&self.settings()).unwrap(),
            reviews: self.reviews(),
        }
    }

    pub fn reviews(&self) -> shared::reviews::store::ReviewStore {
        shared::reviews::store::ReviewStore::from_settings(&self.sdk, &self.settings()).unwrap()
    }

    /// Receives what is visible on a queue (short poll, up to ten), with every attribute.
    pub async fn receive(&self, queue_url: &str, visibility_seconds: i32) -> Vec<Message> {
        self.enqueue_new_tasks().await;
        self.sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility_seconds)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages()
            .to_vec()
    }

    /// Empties a queue (what a test's set-up wants gone: a message it will deliver by hand).
    pub async fn purge(&self, queue_url: &str) {
        self.enqueue_new_tasks().await;
        self.sqs
            .purge_queue()
            .queue_url(queue_url)
            .send()
            .await
            .unwrap();
    }

    /// A continuation whose parent never finishes: every attempt fails transiently until the
    /// last allowed receive fails it and its message moves to the dead-letter queue. Returns
    /// the child and the parent's lease (holding the parent `in_progress`).
    pub async fn poisoned(
        &self,
    ) -> (
        shared::tasks::TaskId,
        shared::tasks::TaskId,
        shared::tasks::leases::Lease,
    ) {
        let parent = self.submit("alice", r#"{"prompt":"slow parent"}"#).await;
        self.purge(self.queue_url()).await;
        let claimed = self
            .store()
            .claim(parent, shared::time::now_millis(), 600_000)
            .await
            .unwrap();
        let shared::tasks::leases::ClaimOutcome::Claimed(_, lease) = claimed else {
            panic!("{claimed:?}")
        };
        let body = format!(r#"{{"prompt":"waits","continuation_task_id":"{parent}"}}"#);
        let child = self.submit("alice", &body).await;
        let worker = self.worker();
        for _ in 0..worker.config.max_receive_count {
            let messages = self.receive(self.queue_url(), 0).await;
            worker
                .process(&self.sqs_event(&messages).records[0], None)
                .await;
        }
        // The next receive moves the message past maxReceiveCount into the dead-letter queue.
        assert!(self.receive(self.queue_url(), 0).await.is_empty());
        (child, parent, lease)
    }

    /// The fix of [`Self::poisoned`]: the parent is released and runs to completion.
    pub async fn finish_parent(
        &self,
        parent: shared::tasks::TaskId,
        lease: &shared::tasks::leases::Lease,
    ) {
        self.store()
            .release(lease, "operator fix", &[], shared::time::now_millis())
            .await
            .unwrap();
        self.queue()
            .send(&shared::tasks::TaskMessage {
                task_id: parent,
                request_id: None,
            })
            .await
            .unwrap();
        self.deliver_once(30).await;
        assert_eq!(
            self.store().get(parent).await.unwrap().unwrap().status,
            shared::tasks::TaskStatus::Completed
        );
    }

    /// Puts a task's message straight into the tasks dead-letter queue, as if it had
    /// exhausted its receives.
    pub async fn dead_letter(&self, task_id: shared::tasks::TaskId) {
        self.sqs
            .send_message()
            .queue_url(self.dlq_url())
            .message_body(format!(r#"{{"task_id":"{task_id}"}}"#))
            .send()
            .await
            .unwrap();
    }

    /// Messages on a queue (visible and in flight), once the new tasks are enqueued.
    pub async fn queue_depth(&self, queue_url: &str) -> usize {
        self.enqueue_new_tasks().await;
        self.queue_depth_now(queue_url).await
    }

    /// Messages on a queue as it stands, without running the enqueuer first.
    pub async fn queue_depth_now(&self, queue_url: &str) -> usize {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap();
        let get = |name: aws_sdk_sqs::types::QueueAttributeName| -> usize {
            attrs
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        get(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + get(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    /// What Lambda's SQS integration does once: receive, invoke the worker, delete what succeeded.
    /// `visibility_seconds` 0 makes retried messages visible again at once.
    pub async fn deliver_once(&self, visibility_seconds: i32) -> (Vec<Message>, SqsBatchResponse) {
        self.deliver_once_with(&self.worker(), visibility_seconds)
            .await
    }

    /// [`deliver_once`](Self::deliver_once) through the given worker (another executor or settings).
    pub async fn deliver_once_with<E: shared::tasks::TaskExecutor>(
        &self,
        worker: &TaskWorker<E, ReviewStore>,
        visibility_seconds: i32,
    ) -> (Vec<Message>, SqsBatchResponse) {
        let messages = self.receive(self.queue_url(), visibility_seconds).await;
        let event = self.sqs_event(&messages);
        let response = worker.handle_batch(event, None).await;
        for m in &messages {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| Some(f.item_identifier.as_str()) == m.message_id());
            if !failed {
                self.sqs
                    .delete_message()
                    .queue_url(self.queue_url())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        (messages, response)
    }

    /// Submits a task through the real handler as `who` (a submitter) and returns its id.
    pub async fn submit(&self, who: &str, body: &str) -> shared::tasks::TaskId {
        let response = self
            .pipeline()
            .respond(
                &self.submit_api(),
                submit_request(&token(who, &["submitter"]), body, None),
            )
            .await;
        assert_eq!(response.status(), 200, "{}", json_body(&response));
        shared::tasks::TaskId::parse(json_body(&response)["task_id"].as_str().unwrap()).unwrap()
    }

    pub fn sqs_event(&self, messages: &[Message]) -> SqsEvent {
        devstack::sources::sqs_event(&self.local.queues["TasksQueue"], messages)
    }
}

/// Makes the emulator cancel the next `count` transactions that touch the stack's table
/// `logical` (for example `TasksTable`) with `TransactionConflict`, as real DynamoDB does
/// when transactions overlap (moto, serialized, never does on its own).
pub async fn inject_transaction_conflicts(stack: &TestStack, logical: &str, count: u32) {
    let table = &stack.local.tables[logical];
    reqwest::Client::new()
        .post(format!(
            "{}/_neuraforge/transaction-conflicts",
            moto_endpoint()
        ))
        .json(&serde_json::json!({"table": table, "count": count}))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("the emulator takes conflict injections");
}

/// The pipeline of an authenticated, unaudited route, verifying [`token`]s.
pub fn pipeline() -> Pipeline {
    Pipeline::authenticated(Authenticator::new(&AuthConfig::hs256(
        TEST_SECRET.as_bytes(),
    )))
}

/// Runs one request through [`pipeline`]: what a function's runtime does with it.
pub async fn respond<H: ApiHandler>(handler: &H, request: Request) -> Response<Body> {
    pipeline().respond(handler, request).await
}

pub fn token(subject: &str, roles: &[&str]) -> String {
    shared::auth::mint_token(TEST_SECRET.as_bytes(), subject, roles, 600).unwrap()
}

/// `POST /api/v1/submit_task` with a JSON body and, optionally, an `Idempotency-Key`.
pub fn submit_request(as_token: &str, body: &str, idempotency_key: Option<&str>) -> Request {
    let mut builder = request("POST", "/api/v1/submit_task", Some(as_token), Some(body))
        .header("content-type", "application/json");
    if let Some(key) = idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    builder.build()
}

/// `GET` with one path parameter, as `who` with `roles`.
pub fn get_as(who: &str, roles: &[&str], param: &str, value: &str) -> Request {
    request("GET", "/x", Some(&token(who, roles)), None)
        .path_param(param, value)
        .build()
}

/// Builds an API Gateway-style request as the handlers receive it.
pub fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> RequestBuilder {
    RequestBuilder {
        method: method.into(),
        path: path.into(),
        headers: token
            .map(|t| vec![(header::AUTHORIZATION.to_string(), format!("Bearer {t}"))])
            .unwrap_or_default(),
        body: body.map(String::from),
        path_params: HashMap::new(),
        query: HashMap::new(),
    }
}

pub struct RequestBuilder {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    path_params: HashMap<String, String>,
    query: HashMap<String, String>,
}

impl RequestBuilder {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.insert(name.into(), value.into());
        self
    }

    pub fn path_param(mut self, name: &str, value: &str) -> Self {
        self.path_params.insert(name.into(), value.into());
        self
    }

    pub fn build(self) -> Request {
        let mut builder = shared::lambda_http::http::Request::builder()
            .method(self.method.as_str())
            .uri(format!("https://api.example{}", self.path));
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        let body = match self.body {
            Some(b) => Body::from(b),
            None => Body::Empty,
        };
        let request = builder
            .body(body)
            .unwrap()
            .with_path_parameters(self.path_params);
        if self.query.is_empty() {
            request
        } else {
            request.with_query_string_parameters(self.query)
        }
    }
}

/// The response body as JSON.
pub fn json_body(response: &Response<Body>) -> serde_json::Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(serde_json::Value::Null)
}

/// The next chunk of a streaming response body (`None` when the stream ended).
pub async fn next_chunk(body: &mut shared::http::ChannelBody) -> Option<String> {
    let frame =
        std::future::poll_fn(|cx| http_body::Body::poll_frame(std::pin::Pin::new(&mut *body), cx))
            .await?;
    let data = frame.ok()?.into_data().ok()?;
    Some(String::from_utf8_lossy(&data).into_owned())
}

/// The port a server bound on 127.0.0.1 after it was told to bind port 0, read from
/// the line of its log (`log`) that contains `marker` (`listening on`, `msg="Listening on"`):
/// no port is chosen ahead of the child, so none can be taken in between.
pub async fn bound_port(log: &std::path::Path, marker: &str, seconds: u64) -> u16 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let port = text
            .lines()
            .filter(|line| line.contains(marker))
            .filter_map(|line| line.split("127.0.0.1:").nth(1))
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<u16>().ok()
            })
            .find(|port| *port != 0);
        if let Some(port) = port {
            return port;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {marker:?} line with a port in {}:\n{text}",
            log.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1, for a server that cannot bind port 0 and report it
/// (`cargo lambda watch`): the port is released before the child binds it, so a
/// caller must retry on another port when the child fails to start.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An audit record of an allowed `GET /api/v1/tasks/{task_id}` by alice, at `time`.
pub fn audit_record(request_id: &str, time: i64) -> shared::audit::AuditRecord {
    shared::audit::AuditRecord {
        time,
        request_id: request_id.to_string(),
        principal: "alice".into(),
        roles: vec![],
        function: "get-task".into(),
        route: "/api/v1/tasks/{task_id}".into(),
        method: "GET".into(),
        target: None,
        body_sha256: String::new(),
        status: 200,
        source_ip: None,
        user_agent: None,
        override_of: None,
    }
}

/// An open review ticket for a made-up task, created at `created_at` (for seeding histories).
pub fn seeded_ticket(created_at: i64) -> shared::reviews::Ticket {
    shared::reviews::Ticket {
        ticket_id: shared::tasks::TicketId::from_raw(uuid::Uuid::new_v4().to_string()),
        task_id: shared::tasks::TaskId::new(),
        status: shared::reviews::TicketStatus::Open,
        summary: None,
        created_at,
        updated_at: created_at,
        assigned_to: None,
        sources: vec!["guardrail:pii.v1".into()],
        escalation_payload: serde_json::json!({}),
        version: 1,
        note_count: 0,
    }
}

/// The `sh test` blocks of a Markdown file, with the line each starts on.
pub fn tested_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (number, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(info) = trimmed.strip_prefix("```")
                    && info.split_whitespace().collect::<Vec<_>>() == ["sh", "test"]
                {
                    let indent = line.len() - trimmed.len();
                    open = Some((number + 1, " ".repeat(indent), String::new()));
                }
            }
            Some((start, indent, body)) => {
                if trimmed.starts_with("```") {
                    blocks.push((*start, std::mem::take(body)));
                    open = None;
                } else {
                    body.push_str(line.strip_prefix(indent.as_str()).unwrap_or(line));
                    body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "a `sh test` block is never closed");
    blocks
}

/// A command that talks to the test's moto as a user's AWS CLI or tool would (endpoint,
/// region, credentials from the environment).
pub fn aws_env(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ENDPOINT_URL", moto_endpoint())
        .env("AWS_REGION", "us-east-1")
        // boto3 (the console's deploy script) reads this name, not AWS_REGION.
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
}

/// A finished command's standard output, then its standard error, for assertion messages.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
