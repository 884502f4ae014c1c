//! One source of truth for routes: `shared::routes::ALL`. The template's API
//! events, the `cargo lambda watch` router and `docs/api.md` must list the same routes,
//! and every function crate must be declared in the template with a sample event.

use devstack::Template;
use devstack::template::declared_routes;
use neuraforge_tests::workspace_root;
use shared::routes::ALL;
use std::collections::BTreeSet;

fn template() -> Template {
    Template::load(&workspace_root().join("template.yaml")).unwrap()
}

fn expected() -> BTreeSet<(String, String)> {
    ALL.iter()
        .map(|r| (r.path.to_string(), r.function.to_string()))
        .collect()
}

#[test]
fn the_template_declares_every_route_and_no_other() {
    let declared: BTreeSet<(String, String, bool)> = declared_routes(&template())
        .unwrap()
        .into_iter()
        .map(|r| {
            // ANY: the function itself answers 405 with an Allow header for other methods.
            assert_eq!(r.method, "ANY", "{}", r.path);
            (r.path, r.function, r.streaming)
        })
        .collect();
    let expected: BTreeSet<(String, String, bool)> = ALL
        .iter()
        .map(|r| (r.path.to_string(), r.function.to_string(), r.streaming))
        .collect();
    assert_eq!(
        declared, expected,
        "streaming routes must use responseTransferMode STREAM"
    );
}

#[test]
fn the_local_router_maps_every_route_and_no_other() {
    let output =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .current_dir(workspace_root())
            .output()
            .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let router = metadata["metadata"]["lambda"]["watch"]["router"]
        .as_object()
        .expect("a router");
    let mapped: BTreeSet<(String, String)> = router
        .iter()
        .map(|(path, function)| {
            (
                path.clone(),
                function
                    .as_str()
                    .expect("one function per path")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(mapped, expected());
}

#[test]
fn the_api_documentation_covers_every_route_and_no_other() {
    let docs = std::fs::read_to_string(workspace_root().join("docs/api.md")).unwrap();
    let documented: BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .filter_map(|h| h.trim().trim_matches('`').split_once(' '))
        .filter(|(_, path)| path.starts_with("/api/"))
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    let routes: BTreeSet<String> = ALL
        .iter()
        .map(|r| format!("{} {}", r.methods.join(","), r.path))
        .collect();
    assert_eq!(documented, routes);
}

#[test]
fn every_function_crate_is_in_the_template_with_a_sample_event() {
    let template = template();
    let binaries: BTreeSet<String> = template
        .of_kind("AWS::Serverless::Function")
        .map(|(_, f)| {
            f.metadata["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let crates: BTreeSet<String> = std::fs::read_dir(workspace_root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(binaries, crates);
    for name in &crates {
        let events = workspace_root().join("functions").join(name).join("events");
        let count = std::fs::read_dir(&events).map(|d| d.count()).unwrap_or(0);
        assert!(
            count > 0,
            "{name} has no sample event in {}",
            events.display()
        );
    }
}

/// `docs/openapi.yaml` is what the code describes (regenerate with `infra/dev openapi`).
#[test]
fn the_committed_openapi_description_is_what_the_code_generates() {
    let committed = std::fs::read_to_string(workspace_root().join("docs/openapi.yaml")).unwrap();
    assert!(
        committed == devstack::openapi_yaml().unwrap(),
        "docs/openapi.yaml is stale: run infra/dev openapi"
    );
}

/// The clients' contract lists exactly the routes and methods that are deployed and served locally.
#[test]
fn the_openapi_description_has_every_route_and_method_and_no_other() {
    let doc: serde_json::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(workspace_root().join("docs/openapi.yaml")).unwrap(),
    )
    .unwrap();
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| {
                    ["get", "put", "post", "delete", "patch", "head", "options"]
                        .contains(&k.as_str())
                })
                .map(move |m| (m.to_ascii_uppercase(), path.clone()))
        })
        .collect();
    let routes: BTreeSet<(String, String)> = ALL
        .iter()
        .flat_map(|r| {
            r.methods
                .iter()
                .map(|m| (m.to_string(), r.path.to_string()))
        })
        .collect();
    assert_eq!(described, routes);
    // The same paths the template deploys (its events say ANY: the functions answer 405).
    let deployed: BTreeSet<String> = declared_routes(&template())
        .unwrap()
        .into_iter()
        .map(|r| r.path)
        .collect();
    let paths: BTreeSet<String> = described.into_iter().map(|(_, p)| p).collect();
    assert_eq!(paths, deployed);
    let local: BTreeSet<String> = expected().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths, local,
        "the cargo lambda watch router (checked against ALL above)"
    );
}
