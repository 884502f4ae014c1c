//! The roles table of docs/security.md, walked against the real handlers: every
//! route, every role, allow and deny, on moto.

use neuraforge_tests::respond;
use neuraforge_tests::{TestStack, request, submit_request, token, workspace_root};
use shared::health::{LivenessApi, ReadinessApi};
use shared::routes::{ALL, Route};
use shared::tasks::TaskId;
use shared::tasks::runs::run_id_for;
use shared::tasks::stream::{StreamConfig, SubmitStreamApi, TaskEventsApi};
use std::collections::BTreeMap;
use std::time::Duration;

const ROLES: [&str; 5] = ["none", "submitter", "observer", "reviewer", "review_admin"];

/// `{"POST /api/v1/submit_task": {"none": "deny", "submitter": "allow", …}, …}` from docs/security.md.
fn roles_table() -> BTreeMap<String, BTreeMap<String, String>> {
    let docs = std::fs::read_to_string(workspace_root().join("docs/security.md")).unwrap();
    let mut table = BTreeMap::new();
    let mut header: Vec<String> = Vec::new();
    for line in docs.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect();
        if cells.first().map(String::as_str) == Some("route") {
            header = cells;
            continue;
        }
        if header.is_empty() || !cells[0].contains(" /api/") {
            continue;
        }
        let row = header
            .iter()
            .zip(&cells)
            .skip(2)
            .map(|(h, c)| (h.clone(), c.clone()))
            .collect();
        table.insert(cells[0].clone(), row);
    }
    table
}

/// Sends `route` a request as `role` (None: no token) about a task owned by `owner`.
async fn status(
    stack: &TestStack,
    route: &Route,
    role: Option<&str>,
    caller: &str,
    task: TaskId,
) -> u16 {
    let roles: Vec<&str> = match role {
        Some("none") | None => vec![],
        Some(r) => vec![r],
    };
    let bearer = role.map(|_| token(caller, &roles));
    let bearer = bearer.as_deref();
    let body = r#"{"prompt":"roles"}"#;
    let get = |path: &str, param: (&str, String)| {
        request("GET", path, bearer, None)
            .path_param(param.0, &param.1)
            .build()
    };
    let short = StreamConfig {
        max_duration: Duration::from_millis(300),
        ..StreamConfig::default()
    };
    match route.function {
        "submit-task" => {
            let req = match bearer {
                Some(t) => submit_request(t, body, None),
                None => request("POST", route.path, None, Some(body)).build(),
            };
            respond(&stack.submit_api(), req).await.status().as_u16()
        }
        "submit-task-stream" => {
            let api = SubmitStreamApi {
                submit: stack.submit_api(),
                runs: stack.runs(),
                config: short,
            };
            let req = request("POST", route.path, bearer, Some(body)).build();
            neuraforge_tests::pipeline()
                .respond_streaming(&api, req)
                .await
                .status()
                .as_u16()
        }
        "get-task" => respond(
            &stack.get_api(),
            get(route.path, ("task_id", task.to_string())),
        )
        .await
        .status()
        .as_u16(),
        "task-events" => {
            let api = TaskEventsApi {
                reads: stack.reads(),
                slots: stack.slots(),
                tasks: stack.store(),
                runs: stack.runs(),
                config: short,
            };
            neuraforge_tests::pipeline()
                .respond_streaming(&api, get(route.path, ("task_id", task.to_string())))
                .await
                .status()
                .as_u16()
        }
        "review-events" => {
            let api = shared::reviews::feed::ReviewEventsApi {
                reads: stack.reads(),
                slots: stack.slots(),
                tickets: stack.reviews(),
                config: shared::reviews::feed::FeedConfig {
                    max_duration: Duration::from_millis(300),
                    ..Default::default()
                },
            };
            neuraforge_tests::pipeline()
                .respond_streaming(&api, request("GET", route.path, bearer, None).build())
                .await
                .status()
                .as_u16()
        }
        "get-run" => respond(
            &stack.get_run_api(),
            get(route.path, ("run_id", run_id_for(task))),
        )
        .await
        .status()
        .as_u16(),
        "dossier-json" | "dossier-markdown" => {
            use shared::reviews::dossier::{DossierApi, DossierFormat};
            let api = DossierApi {
                format: if route.function == "dossier-json" {
                    DossierFormat::Json
                } else {
                    DossierFormat::Markdown
                },
                reads: stack.reads(),
                tasks: stack.store(),
                runs: stack.runs(),
                tickets: stack.reviews(),
            };
            respond(&api, get(route.path, ("task_id", task.to_string())))
                .await
                .status()
                .as_u16()
        }
        "list-reviews" => {
            let api = shared::reviews::api::ListTicketsApi {
                reads: stack.reads(),
                tickets: stack.reviews(),
            };
            respond(&api, request("GET", route.path, bearer, None).build())
                .await
                .status()
                .as_u16()
        }
        "review-metrics" => {
            let api = shared::reviews::metrics::ReviewMetricsApi {
                reads: stack.reads(),
                tickets: stack.reviews(),
                sla_minutes: 120,
            };
            respond(&api, request("GET", route.path, bearer, None).build())
                .await
                .status()
                .as_u16()
        }
        "get-review" | "assign-review" | "unassign-review" | "add-review-note"
        | "resolve-review" => {
            use shared::reviews::api::TicketAction;
            let action = match route.function {
                "get-review" => TicketAction::Get,
                "assign-review" => TicketAction::Assign,
                "unassign-review" => TicketAction::Unassign,
                "add-review-note" => TicketAction::AddNote,
                _ => TicketAction::Resolve,
            };
            let ticket = stack.open_ticket().await;
            let body = match action {
                TicketAction::AddNote => Some(r#"{"content":"a note"}"#),
                TicketAction::Resolve => Some(r#"{"status":"resolved"}"#),
                _ => None,
            };
            let req = request(route.methods[0], route.path, bearer, body)
                .path_param("ticket_id", &ticket)
                .build();
            respond(&stack.ticket_api(action), req)
                .await
                .status()
                .as_u16()
        }
        "history-recent" => respond(
            &stack.history_recent_api(),
            request("GET", route.path, bearer, None).build(),
        )
        .await
        .status()
        .as_u16(),
        "history-results" => respond(
            &stack.history_results_api(),
            get(route.path, ("task_id", task.to_string())),
        )
        .await
        .status()
        .as_u16(),
        "history-transcript" => respond(
            &stack.transcript_api(),
            get(route.path, ("task_id", task.to_string())),
        )
        .await
        .status()
        .as_u16(),
        "health" => respond(
            &LivenessApi,
            request("GET", route.path, bearer, None).build(),
        )
        .await
        .status()
        .as_u16(),
        "readiness" => {
            let api = ReadinessApi {
                store: stack.store(),
                queue: stack.queue(),
                timeout: Duration::from_secs(2),
            };
            respond(&api, request("GET", route.path, bearer, None).build())
                .await
                .status()
                .as_u16()
        }
        other => panic!("{other} is not in the roles test: add it here and to docs/security.md"),
    }
}

#[tokio::test]
async fn every_route_answers_every_role_as_the_roles_table_says() {
    let table = roles_table();
    let stack = TestStack::new().await;
    // A finished task owned by "owner", so its run and events exist.
    let task = stack.submit("owner", r#"{"prompt":"Revenue 10"}"#).await;
    stack.deliver_once(30).await;

    let documented: Vec<String> = table.keys().cloned().collect();
    let mut routes: Vec<String> = ALL
        .iter()
        .map(|r| format!("{} {}", r.methods[0], r.path))
        .collect();
    routes.sort();
    assert_eq!(
        documented, routes,
        "docs/security.md must list every route once"
    );

    let mut checked = 0;
    for route in ALL {
        let row = &table[&format!("{} {}", route.methods[0], route.path)];
        for role in ROLES {
            let expected = row[role].as_str();
            let as_stranger = status(&stack, route, Some(role), "stranger", task).await;
            let case = format!("{} {} as {role}", route.methods[0], route.path);
            match expected {
                // Authorized; a review action may still find its fresh ticket in the wrong state (409).
                "allow" if route.path.starts_with("/api/v1/reviews/") => {
                    assert!(
                        matches!(as_stranger, 200 | 409),
                        "{case}: allowed, got {as_stranger}"
                    )
                }
                "allow" | "public" => assert_eq!(as_stranger, 200, "{case}: allowed"),
                "deny" => assert_eq!(as_stranger, 403, "{case}: denied"),
                "own" => {
                    assert_eq!(
                        as_stranger, 404,
                        "{case}: someone else's task looks unknown"
                    );
                    assert_eq!(
                        status(&stack, route, Some(role), "owner", task).await,
                        200,
                        "{case}: own task"
                    );
                }
                other => panic!("{case}: unknown cell {other:?}"),
            }
            checked += 1;
        }
        let anonymous = status(&stack, route, None, "anyone", task).await;
        let expected = if route.authenticated { 401 } else { 200 };
        assert_eq!(
            anonymous, expected,
            "{} {} without a token",
            route.methods[0], route.path
        );
        assert_eq!(
            route.authenticated,
            row["none"] != "public",
            "{}: table and route agree on auth",
            route.path
        );
    }
    assert_eq!(checked, ALL.len() * ROLES.len());
}

/// The scopes each route admits (which the pipeline enforces and the OpenAPI description
/// lists) grant exactly the roles the table allows.
#[test]
fn each_routes_scopes_admit_exactly_the_roles_the_table_allows() {
    let table = roles_table();
    for route in ALL {
        let row = &table[&format!("{} {}", route.methods[0], route.path)];
        for role in ROLES.iter().filter(|r| **r != "none") {
            let admitted = shared::auth::role_scopes(role)
                .iter()
                .any(|s| route.scopes.contains(s));
            let allowed = matches!(row[*role].as_str(), "allow" | "own");
            assert_eq!(
                admitted || !route.authenticated,
                allowed || row[*role] == "public",
                "{} {} as {role}: the route's scopes {:?} and docs/security.md disagree",
                route.methods[0],
                route.path,
                route.scopes
            );
        }
    }
}
