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

/// `infra/samconfig.toml` (the deploy workflow's per-environment parameters) names only
/// parameters `template.yaml` has, and every environment sets the ones without a default.
#[test]
fn each_environment_sets_the_template_s_required_parameters_and_no_unknown_one() {
    let template = devstack::Template::load(&workspace_root().join("template.yaml")).unwrap();
    let out = Command::new(python())
        .args([
            "-c",
            "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(workspace_root().join("infra/samconfig.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let required: Vec<&String> = template
        .parameters
        .iter()
        .filter(|(_, default)| default.is_null())
        .map(|(name, _)| name)
        .collect();
    assert!(!required.is_empty());
    for env in ["staging", "production"] {
        let deploy = &config[env]["deploy"]["parameters"];
        assert!(deploy["stack_name"].is_string(), "{env}: stack_name");
        assert_eq!(deploy["confirm_changeset"], false, "{env}");
        assert_eq!(
            deploy["disable_rollback"], false,
            "{env}: failed updates roll back"
        );
        let names: Vec<String> = deploy["parameter_overrides"]
            .as_array()
            .unwrap_or_else(|| panic!("{env}: parameter_overrides"))
            .iter()
            .map(|p| {
                let p = p.as_str().unwrap();
                p.split_once('=')
                    .unwrap_or_else(|| panic!("{p}"))
                    .0
                    .to_string()
            })
            .collect();
        for name in &names {
            assert!(
                template.parameters.contains_key(name),
                "{env}: {name} is not a parameter of template.yaml"
            );
        }
        for name in &required {
            assert!(names.contains(name), "{env} does not set {name}");
        }
    }
}

/// `infra/release_sizes.py` (run by `infra/dev release`) fails a release whose function binary
/// is over 8 MiB, names it, and passes one within the budget.
#[test]
fn the_release_size_check_fails_a_binary_over_the_budget_and_names_it() {
    let build = std::env::temp_dir().join(format!("nf-release-{}", std::process::id()));
    let sized = |name: &str, bytes: u64| {
        std::fs::create_dir_all(build.join(name)).unwrap();
        let file = std::fs::File::create(build.join(name).join("bootstrap")).unwrap();
        file.set_len(bytes).unwrap();
    };
    let check = || {
        Command::new(python())
            .arg(workspace_root().join("infra/release_sizes.py"))
            .arg(&build)
            .output()
            .unwrap()
    };
    sized("SmallFunction", 7 * 1024 * 1024);
    let within = check();
    assert!(within.status.success(), "{}", text(&within));
    assert!(
        text(&within).contains("| SmallFunction | 7.00 | 8 |"),
        "{}",
        text(&within)
    );

    sized("BigFunction", 8 * 1024 * 1024 + 1);
    let over = check();
    assert_eq!(over.status.code(), Some(1), "{}", text(&over));
    assert!(
        String::from_utf8_lossy(&over.stderr).contains("over 8 MiB: BigFunction"),
        "{}",
        text(&over)
    );
    std::fs::remove_dir_all(&build).unwrap();
}
