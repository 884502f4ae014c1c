//! The workflows' linters (`infra/dev test` runs them on `.github/workflows`): actionlint and
//! zizmor pass on ours and catch what they are there for on a workflow that breaks the rules.

use neuraforge_tests::{python, workspace_root};
use std::path::Path;
use std::process::{Command, Output};

fn actionlint(dir: &Path) -> Output {
    Command::new("node")
        .arg(workspace_root().join("infra/lint/actionlint.mjs"))
        .arg(dir)
        .output()
        .unwrap()
}

fn zizmor(dir: &Path) -> Output {
    // zizmor sits beside the venv's Python.
    Command::new(python().with_file_name("zizmor"))
        .args(["--offline", "--no-progress"])
        .arg(dir)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_workflows_pass_actionlint_and_zizmor_which_catch_a_bad_one() {
    let ours = workspace_root().join(".github/workflows");
    let linted = actionlint(&ours);
    assert!(linted.status.success(), "{}", text(&linted));
    let audited = zizmor(&ours);
    assert!(audited.status.success(), "{}", text(&audited));

    // Untrusted input in a run line, an action by tag, default permissions, a typo.
    let dir = std::env::temp_dir().join(format!("nf-workflows-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad.yml"),
        "on: pull_request_target\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: echo \"${{ github.event.pull_request.title }}\"\n      - run: echo ${{ steps.nope.outputs.x }}\n        shel: bash\n",
    )
    .unwrap();
    let linted = actionlint(&dir);
    assert!(!linted.status.success());
    assert!(text(&linted).contains("shel"), "{}", text(&linted));
    let audited = zizmor(&dir.join("bad.yml"));
    assert!(!audited.status.success());
    for audit in [
        "unpinned-uses",
        "template-injection",
        "excessive-permissions",
    ] {
        assert!(
            text(&audited).contains(audit),
            "{audit}:\n{}",
            text(&audited)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
