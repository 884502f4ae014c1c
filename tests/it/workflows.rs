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
    neuraforge_tests::said(out)
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
/// parameters its template has, and every environment sets the ones without a default: the
/// functions' stack (`template.yaml`) and the exporter's (`infra/exporter/template.yaml`,
/// `<env>-metrics`; `infra/dev deploy` adds the image and the access key's ARN).
#[test]
fn each_environment_sets_the_template_s_required_parameters_and_no_unknown_one() {
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
    let stacks: [(&str, &str, &[&str]); 2] = [
        ("", "template.yaml", &[]),
        (
            "-metrics",
            "infra/exporter/template.yaml",
            &["ImageUri", "AccessKeySecretArn"],
        ),
    ];
    for (suffix, file, added_at_deploy) in stacks {
        let template = devstack::Template::load(&workspace_root().join(file)).unwrap();
        let required: Vec<&String> = template
            .parameters
            .iter()
            .filter(|(name, default)| {
                default.is_null() && !added_at_deploy.contains(&name.as_str())
            })
            .map(|(name, _)| name)
            .collect();
        assert!(!required.is_empty());
        for env in ["staging", "production"].map(|e| format!("{e}{suffix}")) {
            let deploy = &config[&env]["deploy"]["parameters"];
            assert!(deploy["stack_name"].is_string(), "{env}: stack_name");
            assert_eq!(deploy["confirm_changeset"], false, "{env}");
            assert_eq!(
                deploy["disable_rollback"], false,
                "{env}: failed updates roll back"
            );
            if !suffix.is_empty() {
                assert_eq!(deploy["template_file"], file, "{env}");
            }
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
                    "{env}: {name} is not a parameter of {file}"
                );
            }
            for name in &required {
                assert!(names.contains(name), "{env} does not set {name}");
            }
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

/// The observability job's check (`infra/observability/check_grafana.py`) fails, in one line,
/// when Grafana has not provisioned the dashboards (here: no Grafana at all).
#[test]
fn the_grafana_check_fails_in_one_line_without_the_dashboards() {
    let out = Command::new(python())
        .arg(workspace_root().join("infra/observability/check_grafana.py"))
        .args(["--grafana", "http://127.0.0.1:9", "--wait-seconds", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.starts_with("check_grafana: Grafana did not load every dashboard of dashboards/")
            && said.trim_end().lines().count() == 1,
        "{said}"
    );
}

/// The exporter's image, its ECS stack and the observability compose agree: the ports the image
/// serves on are the ones the stack maps and Prometheus scrapes, and every file the compose
/// mounts exists.
#[test]
fn the_exporter_image_its_stack_and_the_compose_agree_on_ports_and_files() {
    let root = workspace_root();
    let dockerfile = std::fs::read_to_string(root.join("infra/exporter/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(r#""--listen", "0.0.0.0:8080", "--metrics-listen", "0.0.0.0:9464""#)
    );
    let stack: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root.join("infra/exporter/template.yaml")).unwrap(),
    )
    .unwrap();
    let resources = &stack["Resources"];
    let ports: Vec<i64> =
        resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]["PortMappings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ContainerPort"].as_i64().unwrap())
            .collect();
    assert_eq!(ports, [8080, 9464]);
    // The public side reaches the Firehose port only; the metrics port is Prometheus's.
    assert_eq!(resources["TargetGroup"]["Properties"]["Port"], 8080);
    assert_eq!(
        resources["TargetGroup"]["Properties"]["HealthCheckPath"],
        "/-/healthy"
    );
    let secrets = &resources["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Secrets"];
    assert_eq!(secrets[0]["Name"], "EXPORTER_FIREHOSE_ACCESS_KEY");

    let compose_dir = root.join("infra/observability");
    let compose: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(compose_dir.join("compose.yaml")).unwrap(),
    )
    .unwrap();
    for (name, service) in compose["services"].as_object().unwrap() {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            assert!(
                compose_dir.join(host).exists(),
                "{name} mounts {host}, which is missing"
            );
        }
    }
    let prometheus = std::fs::read_to_string(compose_dir.join("prometheus.yml")).unwrap();
    assert!(
        prometheus.contains(r#"targets: ["exporter:9464"]"#),
        "{prometheus}"
    );
}
