//! The HTTP routes, defined once. `template.yaml`, the `cargo lambda watch`
//! router in the root `Cargo.toml` and `docs/api.md` are checked against this
//! list by `tests/it/routes.rs`.

use crate::scopes::{REPORTS_READ, REVIEWS_READ, REVIEWS_WRITE, TASKS_READ, TASKS_SUBMIT};

/// Reads of tasks, their events and runs: readers see all, submitters their own.
const TASK_READERS: &[&str] = &[TASKS_READ, TASKS_SUBMIT];

/// One HTTP route served by one Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The function (crate and binary) that serves the route.
    pub function: &'static str,
    /// The path as API Gateway writes it, with `{param}` placeholders.
    pub path: &'static str,
    /// The methods the function answers; any other gets `405`.
    pub methods: &'static [&'static str],
    /// Whether a bearer token is required.
    pub authenticated: bool,
    /// The scopes that admit a caller, any one of them (checked before the handler runs;
    /// handlers narrow further: own tasks, someone else's ticket). Empty on public routes.
    /// The OpenAPI description and the roles table of `docs/security.md` say the same.
    pub scopes: &'static [&'static str],
    /// Whether the response streams (Server-Sent Events through Lambda response streaming).
    pub streaming: bool,
    /// The largest request body read at all: a larger one is a `413` before any parsing.
    pub max_body_bytes: usize,
}

/// Bodies of the routes other than submissions: review actions are small JSON objects.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Submissions: the ceiling of `TASKS__MAX_BODY_BYTES`, which then applies its own (lower) limit.
pub const MAX_SUBMISSION_BODY_BYTES: usize = 256 * 1024;

pub const SUBMIT_TASK: Route = Route {
    function: "submit-task",
    path: "/api/v1/submit_task",
    methods: &["POST"],
    authenticated: true,
    scopes: &[TASKS_SUBMIT],
    streaming: false,
    max_body_bytes: MAX_SUBMISSION_BODY_BYTES,
};

pub const SUBMIT_TASK_STREAM: Route = Route {
    function: "submit-task-stream",
    path: "/api/v1/submit_task/stream",
    methods: &["POST"],
    authenticated: true,
    scopes: &[TASKS_SUBMIT],
    streaming: true,
    max_body_bytes: MAX_SUBMISSION_BODY_BYTES,
};

pub const GET_TASK: Route = Route {
    function: "get-task",
    path: "/api/v1/tasks/{task_id}",
    methods: &["GET"],
    authenticated: true,
    scopes: TASK_READERS,
    streaming: false,
    max_body_bytes: MAX_BODY_BYTES,
};

pub const HEALTH: Route = Route {
    function: "health",
    path: "/api/v1/health",
    methods: &["GET"],
    authenticated: false,
    scopes: &[],
    streaming: false,
    max_body_bytes: MAX_BODY_BYTES,
};

pub const READINESS: Route = Route {
    function: "readiness",
    path: "/api/v1/health/ready",
    methods: &["GET"],
    authenticated: false,
    scopes: &[],
    streaming: false,
    max_body_bytes: MAX_BODY_BYTES,
};

pub const GET_RUN: Route = Route {
    function: "get-run",
    path: "/api/v1/orchestrator/runs/{run_id}",
    methods: &["GET"],
    authenticated: true,
    scopes: TASK_READERS,
    streaming: false,
    max_body_bytes: MAX_BODY_BYTES,
};

pub const TASK_EVENTS: Route = Route {
    function: "task-events",
    path: "/api/v1/tasks/{task_id}/events",
    methods: &["GET"],
    authenticated: true,
    scopes: TASK_READERS,
    streaming: true,
    max_body_bytes: MAX_BODY_BYTES,
};

/// v1's history routes: the caller's own tasks (submitters).
pub const HISTORY_RECENT: Route = Route {
    function: "history-recent",
    path: "/api/v1/history/recent",
    methods: &["GET"],
    authenticated: true,
    scopes: &[TASKS_SUBMIT],
    streaming: false,
    max_body_bytes: MAX_BODY_BYTES,
};

pub const HISTORY_RESULTS: Route = Route {
    function: "history-results",
    path: "/api/v1/history/{task_id}",
    methods: &["GET"],
    authenticated: true,
    scopes: &[TASKS_SUBMIT],
    streaming: false,
    max_body_bytes: MAX_BODY_BYTES,
};

/// A transcript is the console's whole chat: up to the submissions' body ceiling.
pub const HISTORY_TRANSCRIPT: Route = Route {
    function: "history-transcript",
    path: "/api/v1/history/{task_id}/transcript",
    methods: &["GET", "PUT"],
    authenticated: true,
    scopes: &[TASKS_SUBMIT],
    streaming: false,
    max_body_bytes: MAX_SUBMISSION_BODY_BYTES,
};

const fn review(
    function: &'static str,
    path: &'static str,
    method: &'static [&'static str],
    scopes: &'static [&'static str],
) -> Route {
    Route {
        function,
        path,
        methods: method,
        authenticated: true,
        scopes,
        streaming: false,
        max_body_bytes: MAX_BODY_BYTES,
    }
}

pub const DOSSIER_JSON: Route = review(
    "dossier-json",
    "/api/v1/reports/{task_id}/dossier.json",
    &["GET"],
    &[REPORTS_READ],
);
pub const DOSSIER_MARKDOWN: Route = review(
    "dossier-markdown",
    "/api/v1/reports/{task_id}/dossier.md",
    &["GET"],
    &[REPORTS_READ],
);
pub const LIST_REVIEWS: Route =
    review("list-reviews", "/api/v1/reviews", &["GET"], &[REVIEWS_READ]);
pub const REVIEW_METRICS: Route = review(
    "review-metrics",
    "/api/v1/reviews/metrics",
    &["GET"],
    &[REVIEWS_READ],
);
pub const REVIEW_EVENTS: Route = Route {
    function: "review-events",
    path: "/api/v1/reviews/events",
    methods: &["GET"],
    authenticated: true,
    scopes: &[REVIEWS_READ],
    streaming: true,
    max_body_bytes: MAX_BODY_BYTES,
};
pub const GET_REVIEW: Route = review(
    "get-review",
    "/api/v1/reviews/{ticket_id}",
    &["GET"],
    &[REVIEWS_READ],
);
pub const ASSIGN_REVIEW: Route = review(
    "assign-review",
    "/api/v1/reviews/{ticket_id}/assign",
    &["POST"],
    &[REVIEWS_WRITE],
);
pub const UNASSIGN_REVIEW: Route = review(
    "unassign-review",
    "/api/v1/reviews/{ticket_id}/unassign",
    &["PATCH"],
    &[REVIEWS_WRITE],
);
pub const ADD_REVIEW_NOTE: Route = review(
    "add-review-note",
    "/api/v1/reviews/{ticket_id}/notes",
    &["POST"],
    &[REVIEWS_WRITE],
);
pub const RESOLVE_REVIEW: Route = review(
    "resolve-review",
    "/api/v1/reviews/{ticket_id}/resolve",
    &["POST"],
    &[REVIEWS_WRITE],
);

pub const ALL: &[Route] = &[
    SUBMIT_TASK,
    SUBMIT_TASK_STREAM,
    GET_TASK,
    TASK_EVENTS,
    GET_RUN,
    HISTORY_RECENT,
    HISTORY_RESULTS,
    HISTORY_TRANSCRIPT,
    LIST_REVIEWS,
    REVIEW_METRICS,
    REVIEW_EVENTS,
    GET_REVIEW,
    DOSSIER_JSON,
    DOSSIER_MARKDOWN,
    ASSIGN_REVIEW,
    UNASSIGN_REVIEW,
    ADD_REVIEW_NOTE,
    RESOLVE_REVIEW,
    HEALTH,
    READINESS,
];
