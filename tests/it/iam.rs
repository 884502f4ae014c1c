//! Least privilege, checked: every function's flows run against moto through an SDK
//! whose HTTP layer records each call as the IAM action and resource it needs, and the
//! result is compared with the function's policy in `template.yaml` both ways. A call
//! the policy does not grant fails the test (it would be refused in AWS); so does a
//! grant no call uses, unless it is listed in `RARE` with the path that needs it.

use devstack::Template;
use neuraforge_tests::recorder::{RawUse, Recorder};
use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, get_as, request, submit_request, token, workspace_root};
use serde_json::Value;
use shared::reviews::api::{TicketAction, TicketApi};
use std::collections::{BTreeMap, BTreeSet};

/// Grants exercised only on paths the flows below do not take, each with its reason.
const RARE: &[(&str, &str, &str, &str)] = &[
    (
        "task-enqueuer",
        "dynamodb:*",
        "TasksTable/stream",
        "the event source mapping reads the tasks table's stream with the function's role",
    ),
    (
        "task-enqueuer",
        "sqs:SendMessage",
        "TasksEnqueueFailedQueue",
        "the event source mapping names the stream records it gave up on (after 24 h of \
         failed sends) with the function's role",
    ),
    (
        "task-worker",
        "sqs:*",
        "TasksQueue",
        "the event source mapping (Lambda's poller) receives and deletes with the function's role",
    ),
    (
        "task-worker",
        "dynamodb:GetItem",
        "ReviewsTable",
        "a replayed run finds its task's ticket already open and reads which one",
    ),
    (
        "task-worker",
        "dynamodb:GetItem",
        "RunsTable",
        "a replayed run reads back the run record it wrote before",
    ),
    (
        "task-worker",
        "ssm:GetParameter",
        "OpenAiApiKeyParameter",
        "with AgentBackend=openai, the model provider's key at cold start",
    ),
];

/// One statement of a policy, with resources as logical ids (`Table`, `Table/index/name`).
#[derive(Debug)]
struct Grant {
    actions: Vec<String>,
    resources: Vec<String>,
    /// `dynamodb:LeadingKeys` patterns, when the statement has that condition.
    leading_keys: Option<Vec<String>>,
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

fn logical_resource(value: &Value) -> String {
    if let Some(att) = value["Fn::GetAtt"].as_array() {
        return att[0].as_str().unwrap_or_default().to_string();
    }
    let sub = value["Fn::Sub"].as_str().unwrap_or_default();
    if let Some(rest) = sub.strip_prefix("${")
        && let Some((table, index)) = rest.split_once(".Arn}/index/")
    {
        return format!("{table}/index/{index}");
    }
    if let Some(rest) = sub.strip_prefix("${")
        && let Some((table, _)) = rest.split_once(".Arn}/stream/")
    {
        return format!("{table}/stream");
    }
    // An object prefix of a bucket: `Bucket/records/*`.
    if let Some(rest) = sub.strip_prefix("${")
        && let Some((bucket, objects)) = rest.split_once(".Arn}/")
    {
        return format!("{bucket}/{objects}");
    }
    if sub.contains(":parameter") {
        let name = sub.rsplit("${").next().unwrap_or_default();
        return name.trim_end_matches('}').to_string();
    }
    panic!("a resource the test cannot read: {value}")
}

fn policy(template: &Template, logical: &str) -> Vec<Grant> {
    let function = &template.resources[logical];
    let mut grants = Vec::new();
    for policy in function.properties["Policies"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for statement in policy["Statement"].as_array().into_iter().flatten() {
            assert_eq!(
                statement["Effect"], "Allow",
                "{logical}: only Allow statements"
            );
            let resources = match &statement["Resource"] {
                Value::Array(items) => items.iter().map(logical_resource).collect(),
                one => vec![logical_resource(one)],
            };
            let leading_keys =
                statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                    .as_array()
                    .map(|p| {
                        p.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    });
            grants.push(Grant {
                actions: strings(&statement["Action"]),
                resources,
                leading_keys,
            });
        }
    }
    grants
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head) && text.len() >= head.len() + tail.len() && text.ends_with(tail)
        }
    }
}

/// A recorded call as (action, logical resource, partition key value).
fn resolve(
    stack: &TestStack,
    template: &Template,
    parameters: &BTreeMap<String, String>,
    raw: &RawUse,
) -> (String, String, Option<String>) {
    let by_physical = |physical: &str| {
        stack
            .local
            .tables
            .iter()
            .find(|(_, p)| p.as_str() == physical)
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| format!("unknown table {physical}"))
    };
    let by_bucket = |physical: &str| {
        stack
            .local
            .buckets
            .iter()
            .find(|(_, p)| p.as_str() == physical)
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| format!("unknown bucket {physical}"))
    };
    let (kind, name) = raw.target.split_once(':').unwrap_or(("", ""));
    let resource = match kind {
        "table" => by_physical(name),
        "index" => {
            let (table, index) = name.split_once('/').unwrap_or((name, ""));
            format!("{}/index/{index}", by_physical(table))
        }
        "queue" => stack
            .local
            .queues
            .iter()
            .find(|(_, q)| q.url == name)
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| format!("unknown queue {name}")),
        "parameter" if parameters.contains_key(name) => parameters[name].clone(),
        "bucket" => by_bucket(name),
        "object" => {
            let (bucket, key) = name.split_once('/').unwrap_or((name, ""));
            format!("{}/{key}", by_bucket(bucket))
        }
        _ => raw.target.clone(),
    };
    // The partition key's value, as dynamodb:LeadingKeys sees it.
    let leading = raw.key.as_ref().and_then(|key| {
        let key: Value = serde_json::from_str(key).ok()?;
        let schema = &template.resources.get(&resource)?.properties["KeySchema"];
        let hash = schema.as_array()?.iter().find(|k| k["KeyType"] == "HASH")?["AttributeName"]
            .as_str()?;
        key[hash]["S"].as_str().map(String::from)
    });
    (raw.action.clone(), resource, leading)
}

struct World {
    stack: TestStack,
    /// alice's completed task and its run.
    done: shared::tasks::TaskId,
    run_id: String,
    /// An open ticket (alice's risky task), and the task it belongs to.
    ticket: String,
    risky: shared::tasks::TaskId,
}

async fn world() -> World {
    let stack = TestStack::new().await;
    let done = stack
        .submit(
            "alice",
            r#"{"prompt":"Revenue grew 12.5 percent. Summarise the quarter."}"#,
        )
        .await;
    stack.deliver_once(30).await;
    let ticket = stack.open_ticket().await;
    let risky = stack.reviews().get(&ticket).await.unwrap().unwrap().task_id;
    World {
        run_id: shared::tasks::runs::run_id_for(done),
        stack,
        done,
        ticket,
        risky,
    }
}

async fn drain(response: shared::lambda_http::Response<shared::http::ChannelBody>) {
    let mut body = response.into_body();
    while neuraforge_tests::next_chunk(&mut body).await.is_some() {}
}

/// Runs `binary`'s flows through `rec`, a view of the world's stack whose calls are recorded.
async fn exercise(binary: &str, w: &World, rec: &TestStack) {
    use shared::runtime::ScheduledJob;
    let settings = rec.settings();
    // Cold start: the signing secret from SSM, as the deployed functions read it.
    let authenticated = shared::routes::ALL
        .iter()
        .any(|r| r.function == binary && r.authenticated);
    if authenticated {
        shared::auth::load(
            &rec.sdk,
            &rec.settings_with(&[("AUTH__JWT_SECRET_KEY", "")]),
        )
        .await
        .unwrap();
    }
    let auditor = rec.auditor();
    let short_streams = shared::tasks::stream::StreamConfig {
        poll_interval: std::time::Duration::from_millis(20),
        max_duration: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let done = w.done.to_string();
    match binary {
        "submit-task" => {
            let api = rec.submit_api();
            for key in [Some("k-1"), Some("k-1"), None] {
                let req = submit_request(&token("alice", &["submitter"]), r#"{"prompt":"x"}"#, key);
                assert_eq!(auditor.respond(&api, req).await.status(), 200);
            }
            let body = format!(r#"{{"prompt":"go on","continuation_task_id":"{done}"}}"#);
            let req = submit_request(&token("alice", &["submitter"]), &body, None);
            assert_eq!(auditor.respond(&api, req).await.status(), 200);
        }
        "submit-task-stream" => {
            let api = shared::tasks::stream::SubmitStreamApi {
                submit: rec.submit_api(),
                runs: rec.runs(),
                config: short_streams,
            };
            for key in [Some("stream-1"), Some("stream-1")] {
                let req = submit_request(&token("alice", &["submitter"]), r#"{"prompt":"x"}"#, key);
                drain(auditor.respond_streaming(&api, req).await).await;
            }
        }
        "get-task" => {
            let r = auditor
                .respond(
                    &rec.get_api(),
                    get_as("alice", &["submitter"], "task_id", &done),
                )
                .await;
            assert_eq!(r.status(), 200);
        }
        "history-recent" => {
            let req =
                neuraforge_tests::request("GET", "/x", Some(&token("alice", &["submitter"])), None)
                    .build();
            let r = auditor.respond(&rec.history_recent_api(), req).await;
            assert_eq!(r.status(), 200);
            let listed = neuraforge_tests::json_body(&r);
            assert!(
                !listed.as_array().unwrap().is_empty(),
                "alice's tasks: {listed}"
            );
        }
        "history-results" => {
            let r = auditor
                .respond(
                    &rec.history_results_api(),
                    get_as("alice", &["submitter"], "task_id", &done),
                )
                .await;
            assert_eq!(r.status(), 200);
        }
        "history-transcript" => {
            let api = rec.transcript_api();
            let put = neuraforge_tests::request(
                "PUT",
                "/x",
                Some(&token("alice", &["submitter"])),
                Some(r#"{"messages":[{"role":"user","content":"hi"}]}"#),
            )
            .path_param("task_id", &done)
            .build();
            assert_eq!(auditor.respond(&api, put).await.status(), 200);
            let get = get_as("alice", &["submitter"], "task_id", &done);
            assert_eq!(auditor.respond(&api, get).await.status(), 200);
        }
        "get-run" => {
            let r = auditor
                .respond(
                    &rec.get_run_api(),
                    get_as("olga", &["observer"], "run_id", &w.run_id),
                )
                .await;
            assert_eq!(r.status(), 200);
        }
        "task-events" => {
            let api = shared::tasks::stream::TaskEventsApi {
                reads: rec.reads(),
                // Streams here are short: they take their slots at once.
                slots: rec.slots().taken_after(std::time::Duration::ZERO),
                tasks: rec.store(),
                runs: rec.runs(),
                config: short_streams,
            };
            drain(
                auditor
                    .respond_streaming(&api, get_as("olga", &["observer"], "task_id", &done))
                    .await,
            )
            .await;
            // A task still waiting: the stream polls its status until it closes.
            let waiting = w
                .stack
                .submit("alice", r#"{"prompt":"nobody runs this"}"#)
                .await;
            drain(
                auditor
                    .respond_streaming(
                        &api,
                        get_as("olga", &["observer"], "task_id", &waiting.to_string()),
                    )
                    .await,
            )
            .await;
        }
        "review-events" => {
            let api = shared::reviews::feed::ReviewEventsApi {
                reads: rec.reads(),
                slots: rec.slots().taken_after(std::time::Duration::ZERO),
                tickets: rec.reviews(),
                config: shared::reviews::feed::FeedConfig {
                    max_duration: std::time::Duration::from_millis(300),
                    ..Default::default()
                },
            };
            drain(
                auditor
                    .respond_streaming(&api, get_as("rita", &["reviewer"], "x", "y"))
                    .await,
            )
            .await;
        }
        "dossier-json" | "dossier-markdown" => {
            let api = shared::reviews::dossier::DossierApi {
                format: if binary == "dossier-json" {
                    shared::reviews::dossier::DossierFormat::Json
                } else {
                    shared::reviews::dossier::DossierFormat::Markdown
                },
                reads: rec.reads(),
                tasks: rec.store(),
                runs: rec.runs(),
                tickets: rec.reviews(),
            };
            let r = auditor
                .respond(
                    &api,
                    get_as("olga", &["observer"], "task_id", &w.risky.to_string()),
                )
                .await;
            assert_eq!(r.status(), 200);
        }
        "list-reviews" => {
            let api = shared::reviews::api::ListTicketsApi {
                reads: rec.reads(),
                tickets: rec.reviews(),
            };
            let assigned = request("GET", "/x", Some(&token("olga", &["observer"])), None)
                .query("assignee", "rita")
                .build();
            for req in [get_as("olga", &["observer"], "x", "y"), assigned] {
                assert_eq!(auditor.respond(&api, req).await.status(), 200);
            }
        }
        "review-metrics" => {
            let api = shared::reviews::metrics::ReviewMetricsApi {
                reads: rec.reads(),
                tickets: rec.reviews(),
                sla_minutes: 120,
            };
            let r = auditor
                .respond(&api, get_as("olga", &["observer"], "x", "y"))
                .await;
            assert_eq!(r.status(), 200);
        }
        "review-backlog-metrics" => {
            let job = shared::reviews::metrics::BacklogMetrics::new(rec.reviews());
            job.run_once().await.unwrap();
        }
        "get-review" | "assign-review" | "unassign-review" | "add-review-note"
        | "resolve-review" => {
            let steps: &[(TicketAction, Option<&str>)] = match binary {
                "get-review" => &[(TicketAction::Get, None)],
                "assign-review" => &[(TicketAction::Assign, None)],
                "unassign-review" => &[(TicketAction::Unassign, None)],
                "add-review-note" => &[(TicketAction::AddNote, Some(r#"{"content":"checked"}"#))],
                _ => &[(TicketAction::Resolve, Some(r#"{"status":"resolved"}"#))],
            };
            // Each ticket route acts on the world's ticket in its turn (assign before unassign).
            for (action, body) in steps {
                let api = TicketApi::from_settings(*action, &rec.sdk, &settings).unwrap();
                let route = action.route();
                let req = request(
                    route.methods[0],
                    route.path,
                    Some(&token("rita", &["reviewer"])),
                    *body,
                )
                .path_param("ticket_id", &w.ticket)
                .header("content-type", "application/json")
                .build();
                let r = auditor.respond(&api, req).await;
                assert_eq!(r.status(), 200, "{binary}");
            }
        }
        "health" => {
            assert_eq!(
                respond(&shared::health::LivenessApi, get_as("x", &[], "x", "y"))
                    .await
                    .status(),
                200
            );
        }
        "readiness" => {
            let api = shared::health::ReadinessApi {
                store: rec.store(),
                queue: rec.queue(),
                timeout: std::time::Duration::from_secs(2),
            };
            assert_eq!(
                respond(&api, get_as("x", &[], "x", "y")).await.status(),
                200
            );
        }
        "task-worker" => {
            w.stack
                .submit("alice", r#"{"prompt":"Revenue 10. Summarise."}"#)
                .await;
            w.stack
                .submit(
                    "alice",
                    r#"{"prompt":"Refund card 4111 1111 1111 1111 by wire transfer"}"#,
                )
                .await;
            let messages = rec.receive(rec.queue_url(), 30).await;
            rec.worker()
                .handle_batch(rec.sqs_event(&messages), None)
                .await;
        }
        "task-enqueuer" => {
            // A new task, as the tasks table's stream announces it.
            w.stack
                .submit("alice", r#"{"prompt":"to the queue"}"#)
                .await;
            let event = w.stack.new_task_records().await;
            let response = rec.enqueuer_with(rec.queue()).handle(event).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
        "queue-health" => {
            let stuck = w.stack.submit("alice", r#"{"prompt":"never run"}"#).await;
            w.stack
                .sqs
                .send_message()
                .queue_url(w.stack.dlq_url())
                .message_body(format!(r#"{{"task_id":"{stuck}"}}"#))
                .send()
                .await
                .unwrap();
            shared::queue_health::QueueHealth::from_settings(&rec.sdk, &settings)
                .unwrap()
                .run_once()
                .await
                .unwrap();
        }
        "audit-sealer" => {
            // The records the routes above wrote, delivered and sealed at once (no grace);
            // a second run starts from the first one's digest.
            w.stack
                .ship_audit()
                .await
                .expect("the routes above wrote audit lines");
            let settings = rec.settings_with(&[("AUDIT__SEAL_GRACE_SECONDS", "0")]);
            let sealer = shared::audit::seal::Sealer::from_settings(&rec.sdk, &settings)
                .await
                .unwrap();
            // S3 knows LastModified to the second: this second's objects are sealed by a
            // run in the next.
            let next_second = shared::time::now_millis() + 1_000;
            let report = sealer.seal_once(next_second).await.unwrap();
            assert!(report.digests >= 1, "{report:?}");
            sealer.seal_once(next_second).await.unwrap();
        }
        other => panic!("no flow for function {other}: add one to tests/it/iam.rs"),
    }
}

/// The functions in the order their flows must run (assign before unassign before resolve).
const ORDER: &[&str] = &[
    "health",
    "readiness",
    "submit-task",
    "submit-task-stream",
    "get-task",
    "get-run",
    "task-events",
    "dossier-json",
    "dossier-markdown",
    "history-recent",
    "history-results",
    "history-transcript",
    "review-metrics",
    "review-events",
    "review-backlog-metrics",
    "get-review",
    "assign-review",
    "add-review-note",
    // After a note: the queue reads the notes of the tickets that have any.
    "list-reviews",
    "unassign-review",
    "resolve-review",
    "task-worker",
    "audit-sealer",
    "task-enqueuer",
    "queue-health",
];

#[tokio::test]
async fn every_function_s_policy_grants_exactly_the_calls_its_code_makes() {
    let template = Template::load(&workspace_root().join("template.yaml")).unwrap();
    let w = world().await;
    // The SSM parameters by their local names: the two secrets and the audit anchor.
    let parameters: BTreeMap<String, String> = [
        (shared::auth::SECRET_PARAMETER_SETTING, "JwtSecretParameter"),
        (shared::audit::seal::KEY_SETTING, "AuditSigningKeyParameter"),
        (shared::audit::seal::ANCHOR_SETTING, "AuditDigestAnchor"),
    ]
    .map(|(setting, logical)| (w.stack.env()[setting].clone(), logical.to_string()))
    .into();
    let functions: BTreeMap<String, String> = template
        .of_kind("AWS::Serverless::Function")
        .map(|(logical, f)| {
            let binary = f.metadata["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_string();
            (binary, logical.clone())
        })
        .collect();
    assert_eq!(
        functions
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        ORDER.iter().copied().collect::<BTreeSet<_>>(),
        "every function has a flow here"
    );

    let mut problems = Vec::new();
    for binary in ORDER {
        let logical = &functions[*binary];
        let recorder = Recorder::default();
        let rec = w.stack.with_sdk(recorder.sdk(&w.stack.sdk));
        exercise(binary, &w, &rec).await;
        let used: BTreeSet<(String, String, Option<String>)> = recorder
            .take()
            .iter()
            .map(|raw| resolve(&w.stack, &template, &parameters, raw))
            .collect();
        let grants = policy(&template, logical);

        // Every call is granted (with its condition).
        for (action, resource, leading) in &used {
            let granted = grants.iter().any(|g| {
                g.actions.iter().any(|a| a == action)
                    && g.resources.iter().any(|r| glob(r, resource))
                    && g.leading_keys.as_ref().is_none_or(|patterns| {
                        leading
                            .as_ref()
                            .is_some_and(|k| patterns.iter().any(|p| glob(p, k)))
                    })
            });
            if !granted {
                problems.push(format!(
                    "{binary}: calls {action} on {resource} (key {leading:?}) without a grant"
                ));
            }
        }
        // Every grant is used, or is a listed rare path.
        for grant in &grants {
            for action in &grant.actions {
                for resource in &grant.resources {
                    let is_used = used
                        .iter()
                        .any(|(a, r, _)| a == action && glob(resource, r));
                    let rare = RARE.iter().any(|(f, a, r, _)| {
                        (*f == "*" || f == binary) && glob(a, action) && r == resource
                    });
                    if !is_used && !rare {
                        problems.push(format!(
                            "{binary}: grants {action} on {resource}, which no call uses"
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn cloudwatch_alarms_watch_the_dead_letter_queue_the_audit_delivery_the_worker_and_the_streams() {
    let template = Template::load(&workspace_root().join("template.yaml")).unwrap();
    let watched: BTreeSet<(String, String)> = template
        .of_kind("AWS::CloudWatch::Alarm")
        .map(|(_, alarm)| {
            let p = &alarm.properties;
            let dimension = &p["Dimensions"][0]["Value"];
            let target = dimension["Fn::GetAtt"][0]
                .as_str()
                .or(dimension["Ref"].as_str())
                .unwrap_or_default()
                .to_string();
            assert!(
                p["AlarmDescription"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("runbooks/")
                    || p["AlarmDescription"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("docs/"),
                "every alarm names where to start"
            );
            (p["MetricName"].as_str().unwrap().to_string(), target)
        })
        .collect();
    for (metric, target) in [
        ("ApproximateNumberOfMessagesVisible", "TasksDeadLetterQueue"),
        ("DeliveryToS3.DataFreshness", "AuditDeliveryStream"),
        ("Errors", "TaskWorkerFunction"),
        ("Throttles", "TaskWorkerFunction"),
        ("Throttles", "TaskEventsFunction"),
        ("Throttles", "ReviewEventsFunction"),
    ] {
        assert!(
            watched.contains(&(metric.to_string(), target.to_string())),
            "no alarm on {metric} of {target}: {watched:?}"
        );
    }
    // The runbooks the alarms name exist.
    for (_, alarm) in template.of_kind("AWS::CloudWatch::Alarm") {
        let description = alarm.properties["AlarmDescription"].as_str().unwrap();
        let path = description
            .split(['(', ')', ','])
            .map(str::trim)
            .find(|p| p.starts_with("runbooks/") || p.starts_with("docs/"))
            .unwrap();
        assert!(workspace_root().join(path).exists(), "{path}");
    }
}
