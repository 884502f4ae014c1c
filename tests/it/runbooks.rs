//! Runbook commands that can run locally are marked (a fenced block tagged `sh test`): each
//! runs here, with bash, against a fresh local stack, so a runbook cannot rot.

use neuraforge_tests::{TestStack, tested_blocks, workspace_root};

#[test]
fn blocks_are_found_with_their_indent_and_only_when_tagged() {
    let md = "x\n```sh test\na 1\n```\n```bash\nb\n```\n  ```sh test\n  c\n  ```\n";
    assert_eq!(
        tested_blocks(md),
        vec![(2, "a 1\n".to_string()), (8, "c\n".to_string())]
    );
}

#[tokio::test]
async fn every_tested_runbook_command_succeeds_on_a_local_stack() {
    // An operator's day: a task poisoned (its message dead-lettered, the task failed), its
    // cause fixed; the runbooks' commands then find, inspect and replay it.
    let stack = TestStack::new().await;
    let (child, parent, lease) = stack.poisoned().await;
    stack.finish_parent(parent, &lease).await;
    let bin = workspace_root().join("target/debug");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    let mut files: Vec<_> = std::fs::read_dir(workspace_root().join("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, block) in tested_blocks(&text) {
            ran += 1;
            let out = neuraforge_tests::aws_env(&mut std::process::Command::new("bash"))
                .args(["-euo", "pipefail", "-c", &block])
                .env("PATH", &path)
                .env("NF_STACK", &stack.local.stack_name)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}:{line} failed:\n{block}\nstdout: {}\nstderr: {}",
                file.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(ran >= 2, "the runbooks mark their local commands `sh test`");

    // The runbooks' replay put the message back; the worker now completes the task, once.
    assert_eq!(stack.queue_depth(stack.dlq_url()).await, 0);
    stack.deliver_once(30).await;
    let task = stack.store().get(child).await.unwrap().unwrap();
    assert_eq!(task.status, shared::tasks::TaskStatus::Completed);
    let log = stack
        .runs()
        .events_after(child, 0, 1000, shared::tasks::Read::Latest)
        .await
        .unwrap();
    let names: Vec<&str> = log.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "task_reopened").count(),
        1,
        "one replay: {names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "task_completed").count(),
        1,
        "{names:?}"
    );
}
