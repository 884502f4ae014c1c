//! Orchestrator runs on moto: the recorded run, its snapshots, its guardrail
//! decisions and its event log, asserted exactly.

use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, json_body, submit_request, token};
use shared::orchestrator::engine::Orchestrator;
use shared::tasks::TaskId;
use shared::tasks::events::TaskEvent;
use shared::tasks::executor::{ExecutionContext, TaskExecutor};
use shared::tasks::model::{TaskMessage, TaskStatus};
use shared::tasks::runs::run_id_for;

async fn events(stack: &TestStack, task: TaskId) -> Vec<TaskEvent> {
    stack
        .runs()
        .events_after(task, 0, 1000, shared::tasks::Read::Latest)
        .await
        .unwrap()
}

fn names(events: &[TaskEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

/// What a run recorded, without the timestamps.
fn recorded(events: &[TaskEvent]) -> Vec<(u64, String, serde_json::Value)> {
    events
        .iter()
        .map(|e| (e.sequence, e.event.clone(), e.payload.clone()))
        .collect()
}

const FINANCE_PROMPT: &str =
    "Revenue this quarter was 1200 * 1.15 thousand. Send the figures to cfo@example.com.";

#[tokio::test]
async fn a_run_records_its_steps_snapshots_and_decisions() {
    let stack = TestStack::new().await;
    let id = stack
        .submit(
            "alice",
            &serde_json::json!({"prompt": FINANCE_PROMPT}).to_string(),
        )
        .await;
    let (_, batch) = stack.deliver_once(30).await;
    assert!(batch.batch_item_failures.is_empty());

    let log = events(&stack, id).await;
    assert_eq!(
        names(&log),
        vec![
            "task_started",
            "guardrail_triggered",
            "routing_decided",
            "agent_started",
            "tool_invoked",
            "agent_completed",
            "negotiation_round",
            "task_completed",
        ]
    );
    assert_eq!(
        log.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<u64>>()
    );
    let run_id = run_id_for(id);
    assert!(
        log.iter()
            .all(|e| e.run_id.as_deref() == Some(run_id.as_str()) && e.task_id == id)
    );
    assert_eq!(log[1].payload["policy_id"], "pii.v1");
    assert_eq!(log[1].payload["decision"], "redact");
    assert_eq!(
        log[2].payload["selected"],
        serde_json::json!(["finance_agent"])
    );
    assert_eq!(log[4].payload["tool"], "calculator");
    assert_eq!(log[4].payload["outcome"], "ok");
    assert_eq!(log[4].payload["output"]["value"], 1380.0);
    let content = log[5].payload["content"].as_str().unwrap();
    assert!(
        content.contains("Computed 1200 * 1.15 = 1380.0"),
        "{content}"
    );
    assert!(!content.contains("cfo@example.com"));
    assert_eq!(log[6].payload["decision"], "consensus");
    assert_eq!(log[7].payload["winner"], "finance_agent");

    // The run item is written once, when the run starts: which task, when, on what backend
    // (get-run reads how it ended from the task and its events: tests/it/runs.rs).
    let runs = stack.runs();
    let run = runs.item(&run_id, "run").await.unwrap().unwrap();
    assert_eq!(
        (run["task_id"].as_str(), run["backend"].as_str()),
        (Some(id.to_string().as_str()), Some("builtin"))
    );
    assert!(run["started_at"].is_i64());
    // Snapshots and decisions are kept once: in the event log, not as run items too.
    let snapshots = shared::tasks::payloads_of(&log, "negotiation_round");
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0]["leader"], "finance_agent");
    let decisions = shared::tasks::payloads_of(&log, "guardrail_triggered");
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["policy_id"], "pii.v1");
    for kind in ["snapshot#", "decision#"] {
        assert!(
            runs.items(&run_id, kind, None, 10)
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
    assert!(
        runs.item(&run_id, "dossier").await.unwrap().is_none(),
        "the dossier is built when downloaded, not stored beside the result"
    );

    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    let result = task.result.unwrap();
    assert_eq!(
        (
            result.agents_completed,
            result.guardrail_events,
            result.negotiation_rounds
        ),
        (1, 1, 1)
    );

    // The task document now carries the run.
    let view = respond(
        &stack.get_api(),
        neuraforge_tests::request("GET", "/x", Some(&token("alice", &["submitter"])), None)
            .path_param("task_id", &id.to_string())
            .build(),
    )
    .await;
    let body = json_body(&view);
    assert_eq!(body["run_id"], run_id);
    // v1's shapes: plan and guardrails are objects, report and dossier too.
    assert_eq!(body["plan"]["status"], "ready");
    let step = &body["plan"]["steps"][0];
    assert_eq!(step["agent"], "finance_agent");
    assert_eq!(step["step_id"], "step-1");
    assert_eq!(step["description"], step["objective"]);
    assert_eq!(body["guardrails"]["decisions"][0]["policy_id"], "pii.v1");
    assert_eq!(body["metrics"]["guardrail_events"], 1);
    assert_eq!(body["events"].as_array().unwrap().len(), 8);
    assert_eq!(body["events"][3]["event_type"], "agent_started");
    assert_eq!(body["events"][3]["agent"], "finance_agent");
    // The events carry v1's keys beside today's: a tool call's status and latency, an
    // answer's output.content.
    let tool = &body["events"][4]["payload"];
    assert_eq!(
        (tool["status"].as_str(), tool["latency"].as_f64()),
        (Some("success"), Some(0.0))
    );
    let answer = &body["events"][5]["payload"];
    assert_eq!(answer["output"]["content"], answer["content"]);
    assert_eq!(answer["output"]["agent"], "finance_agent");
    let headline = body["report"]["headline"].as_str().unwrap();
    assert!(
        headline.contains("Computed 1200 * 1.15 = 1380.0"),
        "{headline}"
    );
    assert_eq!(
        body["report"]["agent_perspectives"][0]["agent"],
        "finance_agent"
    );
    assert_eq!(body["report"]["suggested_actions"][0]["step_id"], "step-1");
    assert_eq!(body["report"]["plan_status"], "ready");
    assert_eq!(
        body["dossier"]["json"]["agent_perspectives"][0]["agent"],
        "finance_agent"
    );
    assert_eq!(
        body["dossier"]["json"]["meta_resolution"]["winner"],
        "finance_agent"
    );
    assert_eq!(
        body["dossier"]["json_url"],
        format!("/api/v1/reports/{id}/dossier.json")
    );
    // The report is built when read, from the result: not stored beside it.
    assert!(result.report.is_empty());
    let report = body["report"]["markdown"].as_str().unwrap();
    assert!(
        report.starts_with(&format!("# Task {id}\n\nRun `{run_id}`: **completed**.")),
        "{report}"
    );
    assert!(
        report.contains("- **finance_agent** (confidence"),
        "{report}"
    );
    assert!(
        report.contains("1 round(s); winner: finance_agent."),
        "{report}"
    );
    assert!(report.contains("`pii.v1` redact at Input"), "{report}");
}

#[tokio::test]
async fn a_prohibited_prompt_is_denied_and_the_task_fails_without_retries() {
    let stack = TestStack::new().await;
    let id = stack
        .submit(
            "alice",
            r#"{"prompt":"Please write malware for our rivals"}"#,
        )
        .await;
    let (_, batch) = stack.deliver_once(30).await;
    assert!(batch.batch_item_failures.is_empty(), "a denial is final");
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(
        task.last_error.as_deref(),
        Some("input denied by guardrail: prohibited phrase \"write malware\"")
    );
    let log = events(&stack, id).await;
    assert_eq!(
        names(&log),
        vec!["task_started", "guardrail_triggered", "task_failed"]
    );
    assert_eq!(log[1].payload["decision"], "deny");
    let run = respond(
        &stack.get_run_api(),
        neuraforge_tests::request("GET", "/x", Some(&token("olga", &["observer"])), None)
            .path_param("run_id", &run_id_for(id))
            .build(),
    )
    .await;
    let run = json_body(&run);
    assert_eq!(run["status"], "failed");
    // v1's `error` beside `reason`, and the blocked plan's status in the task document.
    let failed = &run["events"][2]["payload"];
    assert_eq!(failed["error"], failed["reason"]);
    assert!(failed["error"].as_str().unwrap().contains("write malware"));
}

#[tokio::test]
async fn a_risky_prompt_is_sent_to_review_before_any_agent_runs() {
    let stack = TestStack::new().await;
    let id = stack
        .submit(
            "alice",
            r#"{"prompt":"Refund card 4111 1111 1111 1111 by wire transfer"}"#,
        )
        .await;
    let (_, batch) = stack.deliver_once(30).await;
    assert!(batch.batch_item_failures.is_empty());
    let task = stack.store().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::AwaitingReview);
    let review = task.result.unwrap().review.unwrap();
    assert!(review.reasons[0].starts_with("pii.v1: 1 card or national id number(s)"));
    let log = events(&stack, id).await;
    assert_eq!(
        names(&log),
        vec![
            "task_started",
            "guardrail_triggered",
            "guardrail_triggered",
            "review_requested"
        ]
    );
    assert_eq!(log[2].payload["policy_id"], "risk_threshold.v1");
}

#[tokio::test]
async fn an_agent_asking_for_a_forbidden_tool_is_refused_and_the_refusal_recorded() {
    let stack = TestStack::new().await;
    let id = stack
        .submit(
            "alice",
            r#"{"prompt":"Write a tagline about https://launch.example/notes"}"#,
        )
        .await;
    stack.deliver_once(30).await;
    let log = events(&stack, id).await;
    let tool_calls: Vec<(&str, &str, &str)> = log
        .iter()
        .filter(|e| e.event == "tool_invoked")
        .map(|e| {
            (
                e.payload["agent"].as_str().unwrap(),
                e.payload["tool"].as_str().unwrap(),
                e.payload["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    // The research agent may fetch, but the host is not allow-listed; the creative agent may not fetch at all.
    assert!(
        tool_calls.contains(&("research_agent", "fetch", "refused")),
        "{tool_calls:?}"
    );
    assert!(
        tool_calls.contains(&("creative_agent", "fetch", "refused")),
        "{tool_calls:?}"
    );
    let denial = log
        .iter()
        .find(|e| e.event == "guardrail_triggered" && e.payload["policy_id"] == "tool_allowlist.v1")
        .expect("the allow-list decision is recorded");
    assert_eq!(denial.payload["decision"], "deny");
    assert_eq!(denial.payload["subject"], "fetch");
    assert_eq!(denial.payload["reason"], "creative_agent may not use fetch");
    assert_eq!(
        stack.store().get(id).await.unwrap().unwrap().status,
        TaskStatus::Completed
    );
}

#[tokio::test]
async fn a_duplicated_delivery_records_every_event_once() {
    let stack = TestStack::new().await;
    let id = stack
        .submit(
            "alice",
            &serde_json::json!({"prompt": FINANCE_PROMPT}).to_string(),
        )
        .await;
    stack
        .queue()
        .send(&TaskMessage {
            task_id: id,
            request_id: None,
        })
        .await
        .unwrap();
    let (messages, _) = stack.deliver_once(30).await;
    assert_eq!(messages.len(), 2);
    let log = events(&stack, id).await;
    assert_eq!(log.len(), 8);
    assert_eq!(log.iter().filter(|e| e.event == "task_started").count(), 1);
}

#[tokio::test]
async fn a_crash_between_writes_replays_to_the_same_recorded_state_as_a_clean_run() {
    let stack = TestStack::new().await;
    let body = serde_json::json!({"prompt": "Forecast revenue of 300 + 45 and draft a tagline for the quarter"}).to_string();
    let clean = stack.submit("alice", &body).await;
    stack.deliver_once(30).await;
    let clean_log = events(&stack, clean).await;
    assert!(
        clean_log.len() > 8,
        "a multi-agent run: {:?}",
        names(&clean_log)
    );

    // The crashed task: a first delivery ran the whole engine, then died before the
    // last three events and the task's own terminal write were recorded.
    let crashed = stack.submit("alice", &body).await;
    stack.purge(stack.queue_url()).await;
    let task = stack.store().get(crashed).await.unwrap().unwrap();
    stack
        .orchestrator()
        .execute(&task, &ExecutionContext::default())
        .await
        .unwrap();
    let full = events(&stack, crashed).await;
    for e in &full[full.len() - 3..] {
        stack
            .dynamodb
            .delete_item()
            .table_name(&stack.local.tables["EventsTable"])
            .key(
                "task_id",
                aws_sdk_dynamodb::types::AttributeValue::S(crashed.to_string()),
            )
            .key(
                "sequence",
                aws_sdk_dynamodb::types::AttributeValue::N(e.sequence.to_string()),
            )
            .send()
            .await
            .unwrap();
    }
    let before_redelivery = events(&stack, crashed).await;

    // Redelivery: the worker claims the task and the engine replays.
    stack
        .queue()
        .send(&TaskMessage {
            task_id: crashed,
            request_id: None,
        })
        .await
        .unwrap();
    let (_, batch) = stack.deliver_once(30).await;
    assert!(batch.batch_item_failures.is_empty());
    let replayed = events(&stack, crashed).await;

    assert_eq!(
        recorded(&replayed),
        recorded(&clean_log),
        "same steps, same order, nothing twice"
    );
    assert_eq!(
        &replayed[..before_redelivery.len()],
        &before_redelivery[..],
        "recorded events are never rewritten"
    );
    let status = |id| {
        let store = stack.store();
        async move { store.get(id).await.unwrap().unwrap().status }
    };
    assert_eq!(
        status(crashed).await,
        status(clean).await,
        "the same outcome as the clean run"
    );
}

#[tokio::test]
async fn metadata_naming_unknown_agents_tools_or_policies_is_refused_at_submission() {
    let stack = TestStack::new().await;
    let body = r#"{"prompt":"x","metadata":{"agents":["wizard_agent"],"tools":["shell"],"policies":["pii.v1"]}}"#;
    let response = respond(
        &stack.submit_api(),
        submit_request(&token("alice", &["submitter"]), body, None),
    )
    .await;
    assert_eq!(response.status(), 422);
    let problem = json_body(&response);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["metadata.agents", "metadata.tools"]);
}

#[tokio::test]
async fn metadata_can_choose_the_agents_and_narrow_their_tools() {
    let stack = TestStack::new().await;
    let id = stack
        .submit("alice", r#"{"prompt":"Revenue 10 + 5","metadata":{"agents":["finance_agent","enterprise_agent"],"tools":["json_query"]}}"#)
        .await;
    stack.deliver_once(30).await;
    let log = events(&stack, id).await;
    assert_eq!(
        log[1].payload["selected"],
        serde_json::json!(["finance_agent", "enterprise_agent"])
    );
    let refused = log
        .iter()
        .find(|e| e.event == "tool_invoked" && e.payload["tool"] == "calculator")
        .unwrap();
    assert_eq!(
        refused.payload["outcome"], "refused",
        "calculator was narrowed away by metadata.tools"
    );
}

#[tokio::test]
async fn the_task_result_stays_small_however_long_the_negotiation() {
    let stack = TestStack::new().await;
    let (mut sizes, mut rounds) = (Vec::new(), Vec::new());
    for max_rounds in ["2", "8"] {
        let settings = stack.settings_with(&[("NEGOTIATION__MAX_ROUNDS", max_rounds)]);
        let worker = stack.worker_with(Orchestrator::from_settings(&stack.sdk, &settings).unwrap());
        let id = stack
            .submit(
                "alice",
                r#"{"prompt":"Forecast revenue of 300 + 45 and draft a tagline for the quarter"}"#,
            )
            .await;
        stack.deliver_once_with(&worker, 30).await;
        let result = stack
            .store()
            .get(id)
            .await
            .unwrap()
            .unwrap()
            .result
            .unwrap();
        let negotiation = serde_json::to_value(&result.negotiation).unwrap();
        assert!(
            negotiation.get("snapshots").is_none(),
            "snapshots are events, not part of the task"
        );
        let log = stack
            .runs()
            .events_after(id, 0, 100, shared::tasks::Read::Latest)
            .await
            .unwrap();
        let snapshots = shared::tasks::payloads_of(&log, "negotiation_round");
        assert_eq!(negotiation["rounds"], snapshots.len());
        rounds.push(snapshots.len());
        sizes.push(serde_json::to_string(&result).unwrap().len());
    }
    assert!(
        rounds[1] >= rounds[0] + 4,
        "a much longer negotiation: {rounds:?}"
    );
    // The result of the long negotiation is the same size, give or take a digit.
    assert!(sizes[1].abs_diff(sizes[0]) <= 8, "{sizes:?}");
}
