//! `nf-ops`, the operators' tool, through its real binary on moto: a poisoned task is
//! dead-lettered and failed, found, inspected without being consumed, and after the fix
//! replayed once and completed once; every change it makes is in the audit log.

use neuraforge_tests::{TestStack, aws_env, workspace_root};
use serde_json::Value;
use shared::tasks::model::TaskStatus;
use shared::tasks::worker::MessageOutcome;
use std::process::Output;
use std::time::{Duration, Instant};

/// Runs `nf-ops --stack <the test stack> <args>` against moto, with no terminal on stdin.
fn nf_ops(stack: &TestStack, args: &[&str]) -> Output {
    aws_env(&mut std::process::Command::new(
        workspace_root().join("target/debug/nf-ops"),
    ))
    .args(["--stack", &stack.local.stack_name])
    .args(args)
    .stdin(std::process::Stdio::null())
    .output()
    .expect("target/debug/nf-ops is built (infra/dev test builds every binary)")
}

/// The JSON `nf-ops --output json <args>` prints; the command must succeed.
fn json(stack: &TestStack, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = nf_ops(stack, &all);
    assert!(
        out.status.success(),
        "nf-ops {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The tasks dead-letter queue's row of `dlq list`.
fn tasks_dlq(list: &Value) -> Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|q| {
            q["queue"]
                .as_str()
                .unwrap()
                .ends_with("TasksDeadLetterQueue")
        })
        .unwrap()
        .clone()
}

fn depth(stack: &TestStack) -> u64 {
    tasks_dlq(&json(stack, &["dlq", "list"]))["depth"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_poisoned_task_is_found_inspected_and_after_the_fix_replayed_and_completed_once() {
    let stack = TestStack::new().await;
    let (child, parent, lease) = stack.poisoned().await;
    let task = stack.store().get(child).await.unwrap().unwrap();
    assert_eq!(
        task.status,
        TaskStatus::Failed,
        "clients see a terminal status"
    );
    assert!(task.last_error.unwrap().starts_with("dead_lettered: "));

    // `list` finds the dead-letter queue from the stack's name alone.
    let list = json(&stack, &["dlq", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{list}");
    let tasks_dlq = tasks_dlq(&list);
    assert!(
        tasks_dlq["source"]
            .as_str()
            .unwrap()
            .ends_with("TasksQueue")
    );
    assert_eq!(tasks_dlq["depth"], 1);
    assert_eq!(tasks_dlq["max_receive_count"], 5);

    // `inspect` shows the message with its task's story, and leaves it where it is.
    let letters = json(&stack, &["dlq", "inspect", "TasksDeadLetterQueue"]);
    let letter = &letters[0];
    assert_eq!(letter["task_id"], child.to_string());
    assert_eq!(letter["task_status"], "failed");
    assert_eq!(letter["attempts"], 5);
    assert!(
        letter["first_failure"]
            .as_str()
            .unwrap()
            .starts_with("#1 Transient: ")
    );
    assert!(
        letter["last_failure"]
            .as_str()
            .unwrap()
            .starts_with("#5 GaveUp: ")
    );
    assert!(
        letter["last_failure"]
            .as_str()
            .unwrap()
            .contains("has not finished yet")
    );
    assert_eq!(depth(&stack), 1, "inspect consumed nothing");
    // Filters select exactly.
    let count = |args: &[&str]| {
        let mut all = vec!["dlq", "inspect", "TasksDeadLetterQueue"];
        all.extend_from_slice(args);
        json(&stack, &all).as_array().unwrap().len()
    };
    assert_eq!(count(&["--task-id", &child.to_string()]), 1);
    assert_eq!(count(&["--task-id", &parent.to_string()]), 0);
    assert_eq!(count(&["--reason", "has not finished yet"]), 1);
    assert_eq!(count(&["--reason", "no such reason"]), 0);
    assert_eq!(count(&["--older-than", "1h"]), 0);
    assert_eq!(count(&["--older-than", "0s"]), 1);

    // A dry run says what would move and changes nothing.
    let dry = json(
        &stack,
        &["dlq", "replay", "TasksDeadLetterQueue", "--dry-run"],
    );
    assert_eq!(dry[0]["action"], "would_move");
    assert_eq!(dry[0]["readiness"]["state"], "reopened");
    assert_eq!(depth(&stack), 1);
    let task = stack.store().get(child).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Failed);

    // Purging needs the queue's name typed out.
    let refused = nf_ops(&stack, &["dlq", "purge", "TasksDeadLetterQueue"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refusing to purge"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let wrong = nf_ops(
        &stack,
        &[
            "dlq",
            "purge",
            "TasksDeadLetterQueue",
            "--confirm",
            "TasksQueue",
        ],
    );
    assert!(!wrong.status.success());
    assert_eq!(depth(&stack), 1);

    // The fix: the parent finishes.
    stack.finish_parent(parent, &lease).await;

    // Replayed: the task is reopened, its message back on the tasks queue, tagged.
    let replayed = json(&stack, &["dlq", "replay", "TasksDeadLetterQueue"]);
    assert_eq!(replayed[0]["action"], "moved", "{replayed}");
    assert_eq!(depth(&stack), 0);
    assert_eq!(
        stack.store().get(child).await.unwrap().unwrap().status,
        TaskStatus::Queued
    );
    let back = stack
        .sqs
        .receive_message()
        .queue_url(stack.queue_url())
        .message_attribute_names("All")
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .visibility_timeout(30)
        .send()
        .await
        .unwrap()
        .messages()
        .to_vec();
    assert_eq!(back.len(), 1);
    let attribute = |name: &str| {
        back[0].message_attributes().unwrap()[name]
            .string_value()
            .unwrap()
            .to_string()
    };
    assert_eq!(attribute("replay_count"), "1");
    assert!(attribute("replayed_by").starts_with("arn:aws:"));
    assert_eq!(
        attribute("replay_of"),
        letter["message_id"].as_str().unwrap()
    );

    // It runs once and completes; a second copy of the message changes nothing.
    let worker = stack.worker();
    let event = stack.sqs_event(&back);
    assert_eq!(
        worker.process(&event.records[0], None).await,
        MessageOutcome::Completed
    );
    assert_eq!(
        worker.process(&event.records[0], None).await,
        MessageOutcome::Duplicate
    );
    let task = stack.store().get(child).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    let log = stack
        .runs()
        .events_after(child, 0, 1000, shared::tasks::Read::Latest)
        .await
        .unwrap();
    let names: Vec<&str> = log.iter().map(|e| e.event.as_str()).collect();
    let reopened = names.iter().position(|n| *n == "task_reopened").unwrap();
    assert_eq!(names[reopened - 1], "task_failed", "{names:?}");
    assert_eq!(names.last(), Some(&"task_completed"));
    assert_eq!(
        names[reopened + 1..]
            .iter()
            .filter(|n| **n == "task_started")
            .count(),
        1,
        "one run after the reopening: {names:?}"
    );
    let sequences: Vec<u64> = log.iter().map(|e| e.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "{sequences:?}"
    );

    // A stream from the start goes on past the old failure to the new run's end.
    let api = stack.events_api(shared::tasks::stream::StreamConfig {
        max_duration: Duration::from_secs(5),
        ..Default::default()
    });
    let request = neuraforge_tests::get_as("alice", &["submitter"], "task_id", &child.to_string());
    let mut body = neuraforge_tests::pipeline()
        .respond_streaming(&api, request)
        .await
        .into_body();
    let mut streamed = Vec::new();
    while let Some(chunk) = neuraforge_tests::next_chunk(&mut body).await {
        if let Some(name) = chunk.lines().find_map(|l| l.strip_prefix("event: ")) {
            streamed.push(name.to_string());
        }
    }
    assert_eq!(streamed, names, "every event, through to the end");

    // The change is in the audit log under the operator's IAM identity.
    let records = stack.audit_records().await;
    let ops: Vec<_> = records.iter().filter(|r| r.function == "nf-ops").collect();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0].route, "dlq replay");
    assert_eq!(ops[0].target.as_deref(), Some(child.to_string().as_str()));
    assert!(ops[0].principal.starts_with("arn:aws:"));
}

#[tokio::test]
async fn a_replay_keeps_to_its_rate_and_cap_and_purge_and_redrive_say_what_they_do() {
    let stack = TestStack::new().await;
    // Three queued tasks whose messages sit in the dead-letter queue (never claimed).
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            stack
                .submit("alice", &format!(r#"{{"prompt":"lost {i}"}}"#))
                .await,
        );
    }
    stack.purge(stack.queue_url()).await;
    for id in &ids {
        stack.dead_letter(*id).await;
    }
    // `tasks stuck` finds them (queued, older than nothing).
    let stuck = json(&stack, &["tasks", "stuck", "--older-than", "0s"]);
    assert_eq!(stuck.as_array().unwrap().len(), 3, "{stuck}");
    assert!(
        stuck
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "queued")
    );

    // At most two, at most 4 a second: the second send waits a quarter of a second.
    let started = Instant::now();
    let moved = json(
        &stack,
        &[
            "dlq",
            "replay",
            "TasksDeadLetterQueue",
            "--max",
            "2",
            "--rate",
            "4",
        ],
    );
    let took = started.elapsed();
    let actions: Vec<&str> = moved
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["moved", "moved"]);
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert_eq!(depth(&stack), 1);
    assert_eq!(stack.queue_depth(stack.queue_url()).await, 2);

    // Redrive is SQS's own move task, which moto lacks: said plainly, nothing moves.
    let redrive = nf_ops(&stack, &["dlq", "redrive", "TasksDeadLetterQueue"]);
    assert!(!redrive.status.success());
    assert!(
        String::from_utf8_lossy(&redrive.stderr).contains("nf-ops dlq replay"),
        "{}",
        String::from_utf8_lossy(&redrive.stderr)
    );
    assert_eq!(depth(&stack), 1);

    // Purge with the queue's name: gone, and audited.
    let name = stack.local.queues["TasksDeadLetterQueue"].name.clone();
    let purged = nf_ops(
        &stack,
        &["dlq", "purge", "TasksDeadLetterQueue", "--confirm", &name],
    );
    assert!(
        purged.status.success(),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    assert_eq!(depth(&stack), 0);
    let records = stack.audit_records().await;
    let routes: Vec<&str> = records
        .iter()
        .filter(|r| r.function == "nf-ops")
        .map(|r| r.route.as_str())
        .collect();
    assert_eq!(routes.iter().filter(|r| **r == "dlq replay").count(), 2);
    assert_eq!(routes.iter().filter(|r| **r == "dlq purge").count(), 1);

    // A bad argument is one clear line.
    let bad = nf_ops(&stack, &["dlq", "inspect", "NoSuchQueue"]);
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.contains("no dead-letter queue \"NoSuchQueue\""),
        "{said}"
    );
}
