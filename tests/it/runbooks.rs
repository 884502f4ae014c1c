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
    let stack = TestStack::new().await;
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
}
