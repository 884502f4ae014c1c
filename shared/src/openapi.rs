//! The clients' contract: an OpenAPI 3.1 description built from the code. Paths,
//! methods, scopes and body limits come from [`crate::routes`]; request and response
//! bodies from the Rust types that serialize them (`utoipa::ToSchema`); error
//! responses from [`ApiError`] itself. `devstack openapi` writes it to
//! `docs/openapi.yaml`, and a test fails when that file is not what this builds.
//!
//! Only this module knows about OpenAPI (the `openapi` feature): the functions are
//! built without it. `template.yaml` stays the deployment's source of routes.

use crate::auth::role_scopes;
use crate::health::{Health, NOT_READY, Readiness};
use crate::http::problem::{ApiError, FieldError, Problem, problem_type};
use crate::reviews::api::{TicketListItem, TicketView};
use crate::reviews::dossier::Dossier;
use crate::reviews::metrics::ReviewMetrics;
use crate::routes::{self, Route};
use crate::tasks::TaskView;
use crate::tasks::history::{HistoryResult, RecentActivity, TranscriptMessage, TranscriptUpdate};
use crate::tasks::runs_api::RunView;
use crate::tasks::submit::{AcceptedBody, SubmitTaskRequest};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{
    AllOfBuilder, ArrayBuilder, ComponentsBuilder, KnownFormat, ObjectBuilder, Schema,
    SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    Components, Content, Header, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required,
};

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";
const PROBLEM_JSON: &str = crate::http::problem::PROBLEM_CONTENT_TYPE;

/// What a route takes and answers, beyond what [`Route`] already says.
struct Operation {
    route: &'static Route,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    params: &'static [Param],
    body: Option<fn(&mut Schemas) -> RefOr<Schema>>,
    /// Whether a request without a body is refused (else it is an empty object).
    body_required: bool,
    success: Success,
    /// Where its success leads: `(operationId, parameter, runtime expression)`, for
    /// clients and for stateful testing (submit → the task → its run).
    links: &'static [(&'static str, &'static str, &'static str)],
    /// The problems this route's own logic returns; those of every route (405, 413,
    /// 500) and of authenticated ones (401, 403, 503) are added from [`Route`].
    problems: &'static [Kind],
}

/// One parameter a route reads.
struct Param {
    name: &'static str,
    place: ParameterIn,
    required: bool,
    description: &'static str,
    schema: fn() -> Schema,
}

/// A route's answer when it succeeds.
enum Success {
    Json {
        status: u16,
        schema: fn(&mut Schemas) -> RefOr<Schema>,
        description: &'static str,
    },
    /// A Server-Sent Events stream: each `data:` line is a JSON `event`, its `id` the resume point.
    EventStream {
        event: fn(&mut Schemas) -> RefOr<Schema>,
        description: &'static str,
    },
    Markdown,
}

/// The schemas the components section collects, by name.
type Schemas = BTreeMap<String, RefOr<Schema>>;

/// A `$ref` to `T`, whose schema (and those it uses) join the components.
fn schema_of<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    let mut used = Vec::new();
    T::schemas(&mut used);
    used.push((T::name().to_string(), T::schema()));
    for (name, schema) in used {
        // Two types of one name would silently replace each other's schema.
        if let Some(known) = schemas.get(&name) {
            assert!(known == &schema, "two different schemas are named {name}");
        }
        schemas.insert(name, schema);
    }
    Ref::from_schema_name(T::name()).into()
}

fn array_of<T: ToSchema>(schemas: &mut Schemas) -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(schema_of::<T>(schemas))
        .build()
        .into()
}

/// The problem kinds a route can answer, by the [`ApiError`] that makes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    MalformedJson,
    BadRequest,
    UnsupportedMediaType,
    PayloadTooLarge,
    Validation,
    Unauthorized,
    Forbidden,
    OwnTask,
    NotFound,
    MethodNotAllowed,
    TicketConflict,
    TaskNotSettled,
    TicketNotesFull,
    IdempotencyConflict,
    RateLimited,
    Unavailable,
    Internal,
    /// Readiness's own `503`.
    NotReady,
}

impl Kind {
    /// `(status, type slug)`, from the error the handlers raise, so the two cannot drift.
    fn problem(self) -> (u16, &'static str) {
        let error = match self {
            Kind::NotReady => return (503, NOT_READY),
            Kind::MalformedJson => ApiError::MalformedJson(String::new()),
            Kind::BadRequest => ApiError::BadRequest(String::new()),
            Kind::UnsupportedMediaType => ApiError::UnsupportedMediaType,
            Kind::PayloadTooLarge => ApiError::PayloadTooLarge { limit: 0 },
            Kind::Validation => ApiError::Validation(Vec::new()),
            Kind::Unauthorized => ApiError::Unauthorized,
            Kind::Forbidden => ApiError::Forbidden,
            Kind::OwnTask => ApiError::OwnTask,
            Kind::NotFound => ApiError::NotFound(""),
            Kind::MethodNotAllowed => ApiError::MethodNotAllowed {
                method: String::new(),
                allowed: &[],
            },
            Kind::TicketConflict => ApiError::TicketConflict { status: "" },
            Kind::TaskNotSettled => ApiError::TaskNotSettled,
            Kind::TicketNotesFull => ApiError::TicketNotesFull { limit: 0 },
            Kind::IdempotencyConflict => ApiError::IdempotencyConflict,
            Kind::RateLimited => ApiError::RateLimited {
                policy: String::new(),
                action: "",
                retry_after_seconds: 0,
            },
            Kind::Unavailable => ApiError::Unavailable {
                retry_after_seconds: 0,
            },
            Kind::Internal => ApiError::Internal(String::new()),
        };
        (error.status().as_u16(), error.slug())
    }
}

fn string() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .build()
        .into()
}

fn uuid() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .build()
        .into()
}

fn page_limit() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(100))
        .build()
        .into()
}

fn pattern(regex: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(regex))
        .build()
        .into()
}

fn snapshot_cursor() -> Schema {
    pattern(r"^snapshot#[0-9]{4}$")
}

fn decision_cursor() -> Schema {
    pattern(r"^decision#[0-9]{4}$")
}

/// A ticket change's id, or a bare time (`<15 digits>[#<ticket>#<item>]`).
fn change_id() -> Schema {
    pattern("^([0-9]{15}(#.{0,184})?)?$")
}

/// The queue's opaque page cursor (base64url).
fn recent_limit() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(crate::tasks::history::RECENT_MAX))
        .build()
        .into()
}

fn list_cursor() -> Schema {
    pattern("^[A-Za-z0-9_-]+$")
}

fn status_filter() -> Schema {
    pattern(r"^ *(open|in_review|resolved|dismissed) *(, *(open|in_review|resolved|dismissed) *)*$")
}

fn minutes() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(525_600))
        .build()
        .into()
}

/// An event's sequence number; empty is absent (as Server-Sent Events have it).
fn sequence() -> Schema {
    pattern(r"^[0-9]{0,19}$")
}

fn idempotency_key() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(crate::tasks::submit::MAX_IDEMPOTENCY_KEY_CHARS))
        .pattern(Some("^[!-~]+$"))
        .build()
        .into()
}

const TASK_ID: Param = Param {
    name: "task_id",
    place: ParameterIn::Path,
    required: true,
    description: "The task's id (a UUID).",
    schema: uuid,
};
const TICKET_ID: Param = Param {
    name: "ticket_id",
    place: ParameterIn::Path,
    required: true,
    description: "The review ticket's id (a UUID).",
    schema: uuid,
};
const IDEMPOTENCY_KEY: Param = Param {
    name: "Idempotency-Key",
    place: ParameterIn::Header,
    required: false,
    description: "Resending the same body with the same key answers the first task again \
                  (`Idempotent-Replayed: true`); another body with it is a `409`.",
    schema: idempotency_key,
};
const TASK_LAST_EVENT_ID: Param = Param {
    name: "Last-Event-ID",
    place: ParameterIn::Header,
    required: false,
    description: "Resume after this event (its `id`, the event's `sequence`).",
    schema: sequence,
};
const TICKET_LAST_EVENT_ID: Param = Param {
    name: "Last-Event-ID",
    place: ParameterIn::Header,
    required: false,
    description: "Resume after this ticket change (its `id`: 15 digits of epoch milliseconds, \
                  then `#…`); without it the stream starts now, and at most 7 days back.",
    schema: change_id,
};
const LIMIT: Param = Param {
    name: "limit",
    place: ParameterIn::Query,
    required: false,
    description: "Items per page, 1 to 100.",
    schema: page_limit,
};

/// The transcript route answers two methods, each its own operation.
const TRANSCRIPT_GET: Route = Route {
    methods: &["GET"],
    ..routes::HISTORY_TRANSCRIPT
};
const TRANSCRIPT_PUT: Route = Route {
    methods: &["PUT"],
    ..routes::HISTORY_TRANSCRIPT
};

/// Every route, described (a route of several methods, once per method).
fn operations() -> Vec<Operation> {
    use Kind::*;
    const READ: &[Kind] = &[BadRequest, NotFound, RateLimited];
    const TICKET_ACTION: &[Kind] = &[
        MalformedJson,
        BadRequest,
        Validation,
        OwnTask,
        NotFound,
        TicketConflict,
        TaskNotSettled,
        RateLimited,
    ];
    const SUBMIT: &[Kind] = &[
        MalformedJson,
        BadRequest,
        UnsupportedMediaType,
        Validation,
        IdempotencyConflict,
        RateLimited,
    ];
    let ticket =
        |route, id, summary, body: Option<fn(&mut Schemas) -> RefOr<Schema>>, body_required| {
            Operation {
                route,
                id,
                links: &[],
                tag: "reviews",
                summary,
                params: &[TICKET_ID],
                body,
                body_required,
                success: Success::Json {
                    status: 200,
                    schema: schema_of::<TicketView>,
                    description: "The ticket after the change, with its notes and history.",
                },
                problems: TICKET_ACTION,
            }
        };
    vec![
        Operation {
            route: &routes::SUBMIT_TASK,
            id: "submitTask",
            links: &[
                ("getTask", "task_id", "$response.body#/task_id"),
                ("taskEvents", "task_id", "$response.body#/task_id"),
            ],
            tag: "tasks",
            summary: "Submit a task; it runs asynchronously.",
            params: &[IDEMPOTENCY_KEY],
            body: Some(schema_of::<SubmitTaskRequest>),
            body_required: true,
            success: Success::Json {
                status: 200,
                schema: schema_of::<AcceptedBody>,
                description: "Recorded and queued (v1's `200`); `Location` is the task.",
            },
            problems: SUBMIT,
        },
        Operation {
            route: &routes::SUBMIT_TASK_STREAM,
            id: "submitTaskStream",
            links: &[],
            tag: "tasks",
            summary: "Submit a task and follow its events until it ends.",
            params: &[IDEMPOTENCY_KEY],
            body: Some(schema_of::<SubmitTaskRequest>),
            body_required: true,
            success: Success::EventStream {
                event: schema_of::<crate::tasks::TaskEvent>,
                description: "The task's events as they happen, ending with a terminal event.",
            },
            problems: SUBMIT,
        },
        Operation {
            route: &routes::GET_TASK,
            id: "getTask",
            links: &[
                ("getRun", "run_id", "$response.body#/run_id"),
                ("dossierJson", "task_id", "$response.body#/task_id"),
                ("dossierMarkdown", "task_id", "$response.body#/task_id"),
            ],
            tag: "tasks",
            summary: "A task's status, outputs, plan, guardrail decisions and first events.",
            params: &[TASK_ID],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: schema_of::<TaskView>,
                description: "The task (its prompt and metadata redacted unless you submitted it).",
            },
            problems: READ,
        },
        Operation {
            route: &routes::TASK_EVENTS,
            id: "taskEvents",
            links: &[],
            tag: "tasks",
            summary: "Follow a task's events (replayed from the start, or after Last-Event-ID).",
            params: &[
                TASK_ID,
                TASK_LAST_EVENT_ID,
                Param {
                    name: "last_event_id",
                    place: ParameterIn::Query,
                    required: false,
                    description: "`Last-Event-ID` for clients that cannot set headers.",
                    schema: sequence,
                },
            ],
            body: None,
            body_required: false,
            success: Success::EventStream {
                event: schema_of::<crate::tasks::TaskEvent>,
                description: "The task's events; the stream ends after a terminal event.",
            },
            problems: READ,
        },
        Operation {
            route: &routes::GET_RUN,
            id: "getRun",
            links: &[],
            tag: "tasks",
            summary: "A run's detail, its negotiation snapshots and guardrail decisions paged.",
            params: &[
                Param {
                    name: "run_id",
                    place: ParameterIn::Path,
                    required: true,
                    description: "The run's id (a UUID; the task's `run_id`).",
                    schema: uuid,
                },
                LIMIT,
                Param {
                    name: "snapshots_cursor",
                    place: ParameterIn::Query,
                    required: false,
                    description: "`negotiation_snapshots.next_cursor` of the page before.",
                    schema: snapshot_cursor,
                },
                Param {
                    name: "decisions_cursor",
                    place: ParameterIn::Query,
                    required: false,
                    description: "`guardrail_decisions.next_cursor` of the page before.",
                    schema: decision_cursor,
                },
            ],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: schema_of::<RunView>,
                description: "The run.",
            },
            problems: READ,
        },
        Operation {
            route: &routes::HISTORY_RECENT,
            id: "historyRecent",
            links: &[
                ("historyResults", "task_id", "$response.body#/0/task_id"),
                ("getTranscript", "task_id", "$response.body#/0/task_id"),
                ("putTranscript", "task_id", "$response.body#/0/task_id"),
            ],
            tag: "history",
            summary: "Your recent tasks, newest first (v1's console history); the next page is in `Link`.",
            params: &[
                Param {
                    name: "limit",
                    place: ParameterIn::Query,
                    required: false,
                    description: "Tasks per page, 1 to 25 (default 5).",
                    schema: recent_limit,
                },
                Param {
                    name: "cursor",
                    place: ParameterIn::Query,
                    required: false,
                    description: "`X-Next-Cursor` of the page before.",
                    schema: list_cursor,
                },
            ],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: array_of::<RecentActivity>,
                description: "One page of your tasks.",
            },
            problems: &[BadRequest, RateLimited],
        },
        Operation {
            route: &routes::HISTORY_RESULTS,
            id: "historyResults",
            links: &[],
            tag: "history",
            summary: "Your task's outputs, one per agent (v1's `TaskResult`).",
            params: &[TASK_ID],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: array_of::<HistoryResult>,
                description: "The outputs; `404 No results available` before there are any.",
            },
            problems: READ,
        },
        Operation {
            route: &TRANSCRIPT_GET,
            id: "getTranscript",
            links: &[],
            tag: "history",
            summary: "The chat transcript the console keeps beside your task (empty if none).",
            params: &[TASK_ID],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: array_of::<TranscriptMessage>,
                description: "The messages, as last written.",
            },
            problems: READ,
        },
        Operation {
            route: &TRANSCRIPT_PUT,
            id: "putTranscript",
            links: &[],
            tag: "history",
            summary: "Replace the transcript of your task.",
            params: &[TASK_ID],
            body: Some(schema_of::<TranscriptUpdate>),
            body_required: true,
            success: Success::Json {
                status: 200,
                schema: array_of::<TranscriptMessage>,
                description: "The messages written.",
            },
            problems: &[MalformedJson, BadRequest, Validation, NotFound, RateLimited],
        },
        Operation {
            route: &routes::LIST_REVIEWS,
            id: "listReviews",
            links: &[
                ("getReview", "ticket_id", "$response.body#/0/ticket_id"),
                ("assignReview", "ticket_id", "$response.body#/0/ticket_id"),
                ("unassignReview", "ticket_id", "$response.body#/0/ticket_id"),
                ("addReviewNote", "ticket_id", "$response.body#/0/ticket_id"),
                ("resolveReview", "ticket_id", "$response.body#/0/ticket_id"),
            ],
            tag: "reviews",
            summary: "The review queue, oldest first; the next page is in `Link`.",
            params: &[
                Param {
                    name: "status_filter",
                    place: ParameterIn::Query,
                    required: false,
                    description: "Comma-separated statuses: open, in_review, resolved, dismissed.",
                    schema: status_filter,
                },
                Param {
                    name: "assignee",
                    place: ParameterIn::Query,
                    required: false,
                    description: "Only tickets assigned to this reviewer.",
                    schema: string,
                },
                Param {
                    name: "min_age_minutes",
                    place: ParameterIn::Query,
                    required: false,
                    description: "Only tickets at least this old.",
                    schema: minutes,
                },
                LIMIT,
                Param {
                    name: "cursor",
                    place: ParameterIn::Query,
                    required: false,
                    description: "`X-Next-Cursor` of the page before.",
                    schema: list_cursor,
                },
            ],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: array_of::<TicketListItem>,
                description: "One page of tickets.",
            },
            problems: &[BadRequest, RateLimited],
        },
        Operation {
            route: &routes::REVIEW_METRICS,
            id: "reviewMetrics",
            links: &[],
            tag: "reviews",
            summary: "The review queue's health: totals, aging, resolution, velocity.",
            params: &[],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: schema_of::<ReviewMetrics>,
                description: "The figures, computed now.",
            },
            problems: &[RateLimited],
        },
        Operation {
            route: &routes::REVIEW_EVENTS,
            id: "reviewEvents",
            links: &[],
            tag: "reviews",
            summary: "Follow every ticket change.",
            params: &[TICKET_LAST_EVENT_ID],
            body: None,
            body_required: false,
            success: Success::EventStream {
                event: schema_of::<crate::reviews::changes::TicketChange>,
                description: "Ticket changes as they happen.",
            },
            problems: &[BadRequest, RateLimited],
        },
        Operation {
            route: &routes::GET_REVIEW,
            id: "getReview",
            links: &[],
            tag: "reviews",
            summary: "One ticket with its notes and history.",
            params: &[TICKET_ID],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: schema_of::<TicketView>,
                description: "The ticket.",
            },
            problems: READ,
        },
        Operation {
            route: &routes::DOSSIER_JSON,
            id: "dossierJson",
            links: &[],
            tag: "reports",
            summary: "Everything known about a task, as a JSON download.",
            params: &[TASK_ID],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: schema_of::<Dossier>,
                description: "The dossier (`Content-Disposition: attachment`).",
            },
            problems: READ,
        },
        Operation {
            route: &routes::DOSSIER_MARKDOWN,
            id: "dossierMarkdown",
            links: &[],
            tag: "reports",
            summary: "The dossier rendered as Markdown.",
            params: &[TASK_ID],
            body: None,
            body_required: false,
            success: Success::Markdown,
            problems: READ,
        },
        ticket(
            &routes::ASSIGN_REVIEW,
            "assignReview",
            "Take a ticket (or, as an admin, give it to a reviewer).",
            Some(schema_of::<AssignRequest>),
            false,
        ),
        ticket(
            &routes::UNASSIGN_REVIEW,
            "unassignReview",
            "Put a ticket back in the queue.",
            Some(schema_of::<UnassignRequest>),
            false,
        ),
        Operation {
            problems: &[
                MalformedJson,
                BadRequest,
                Validation,
                NotFound,
                TicketConflict,
                TicketNotesFull,
                RateLimited,
            ],
            ..ticket(
                &routes::ADD_REVIEW_NOTE,
                "addReviewNote",
                "Add a note to a ticket.",
                Some(schema_of::<NoteRequest>),
                true,
            )
        },
        ticket(
            &routes::RESOLVE_REVIEW,
            "resolveReview",
            "Resolve or dismiss a ticket; the task follows the decision.",
            Some(schema_of::<ResolveRequest>),
            true,
        ),
        Operation {
            route: &routes::HEALTH,
            id: "health",
            links: &[],
            tag: "health",
            summary: "Liveness: the function answers.",
            params: &[],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: schema_of::<Health>,
                description: "Alive.",
            },
            problems: &[],
        },
        Operation {
            route: &routes::READINESS,
            id: "readiness",
            links: &[],
            tag: "health",
            summary: "Readiness: DynamoDB and SQS answer in time.",
            params: &[],
            body: None,
            body_required: false,
            success: Success::Json {
                status: 200,
                schema: schema_of::<Readiness>,
                description: "Ready.",
            },
            problems: &[NotReady],
        },
    ]
}

/// `POST /api/v1/reviews/{ticket_id}/assign` (an empty body takes the ticket yourself).
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
struct AssignRequest {
    /// Who takes the ticket: yourself when absent; someone else needs `reviews:admin`.
    reviewer_id: Option<String>,
}

/// `PATCH /api/v1/reviews/{ticket_id}/unassign`.
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
struct UnassignRequest {
    /// Why, at most 1000 characters (kept in the history).
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

/// `POST /api/v1/reviews/{ticket_id}/notes`.
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
/// (v1's `author` is accepted only when it names the caller: the author is always the caller.)
struct NoteRequest {
    /// Not blank, at most 10000 characters.
    #[schema(min_length = 1, max_length = 10000, pattern = r"\S")]
    content: String,
}

/// `POST /api/v1/reviews/{ticket_id}/resolve`.
#[derive(serde::Deserialize, ToSchema)]
#[allow(dead_code)]
/// (v1's `reviewer_id` is accepted only when it names the caller: the caller decides.)
struct ResolveRequest {
    status: ClosingStatus,
    /// What the reviewer decided about the task's answer.
    outcome: Option<crate::reviews::decisions::Outcome>,
    /// At most 4000 characters.
    #[schema(max_length = 4000)]
    summary: Option<String>,
}

/// How a ticket closes.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ClosingStatus {
    Resolved,
    Dismissed,
}

/// The response headers a route's answers carry.
fn success_headers(route: &Route, rate_limited: bool) -> Vec<(&'static str, Header)> {
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(string()))
            .description(Some(description))
            .build()
    };
    let mut headers = vec![(
        "X-Request-Id",
        header("This request's id, in every log line and audit record of it."),
    )];
    if rate_limited {
        headers.push((
            "RateLimit",
            header("Where the caller stands: `\"<action>\";r=<left>;t=<seconds>`."),
        ));
        headers.push((
            "RateLimit-Policy",
            header("The limit: `\"<action>\";q=<requests>;w=<seconds>`."),
        ));
    }
    if route.path == routes::SUBMIT_TASK.path {
        headers.push(("Location", header("The task: `/api/v1/tasks/{task_id}`.")));
        headers.push((
            "Idempotent-Replayed",
            header("`true` when this answers an earlier request with the same Idempotency-Key."),
        ));
    }
    if route.path == routes::LIST_REVIEWS.path {
        headers.push((
            "Link",
            header("The next page: `<…&cursor=…>; rel=\"next\"` (absent on the last)."),
        ));
        headers.push((
            "X-Next-Cursor",
            header("The next page's `cursor` (absent on the last)."),
        ));
    }
    headers
}

/// The `problem+json` answer for one status: the problem, its `type` one of `slugs`.
fn problem_response(status: u16, slugs: &[&str], schemas: &mut Schemas) -> ResponseBuilder {
    let types: Vec<String> = slugs.iter().map(|s| problem_type(s)).collect();
    let schema = AllOfBuilder::new()
        .item(schema_of::<Problem>(schemas))
        .item(
            ObjectBuilder::new().property(
                "type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(types.clone())),
            ),
        )
        .build();
    let mut response = ResponseBuilder::new()
        .description(format!("`{}`", types.join("`, `")))
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Schema::AllOf(schema)))
                .build(),
        );
    let header = |description: &str| {
        HeaderBuilder::new()
            .schema(Some(string()))
            .description(Some(description))
            .build()
    };
    match status {
        401 | 403 => {
            response = response.header(
                "WWW-Authenticate",
                header(
                    "`Bearer realm=\"neuraforge\"`, with `error=\"invalid_token\"` (401) \
                     or `\"insufficient_scope\"` (403).",
                ),
            )
        }
        405 => response = response.header("Allow", header("The methods this path answers.")),
        429 | 503 => {
            response = response.header(
                "Retry-After",
                header("Seconds to wait before trying again."),
            )
        }
        _ => {}
    }
    response
}

/// One Server-Sent Event: `data` is the JSON of `event`, `id` where to resume.
fn sse_event(event: RefOr<Schema>) -> Schema {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    ObjectBuilder::new()
        .property("id", text())
        .property("event", text())
        .property(
            "data",
            text()
                .content_media_type("application/json")
                .content_schema(Some(event)),
        )
        .property("retry", ObjectBuilder::new().schema_type(Type::Integer))
        .build()
        .into()
}

/// The shared problem answers (`components.responses`), by name.
type Responses = BTreeMap<String, utoipa::openapi::Response>;

/// `rate-limited` → `RateLimited`; several types join with `Or`.
fn response_name(slugs: &[&str]) -> String {
    slugs
        .iter()
        .map(|slug| {
            slug.split('-')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("Or")
}

fn operation(
    op: &Operation,
    schemas: &mut Schemas,
    shared: &mut Responses,
) -> utoipa::openapi::path::Operation {
    let route = op.route;
    let mut kinds: Vec<Kind> = op.problems.to_vec();
    kinds.extend([
        Kind::MethodNotAllowed,
        Kind::PayloadTooLarge,
        Kind::Internal,
    ]);
    if route.authenticated {
        kinds.extend([Kind::Unauthorized, Kind::Forbidden, Kind::Unavailable]);
    }
    kinds.sort();
    kinds.dedup();
    let mut by_status: BTreeMap<u16, Vec<&'static str>> = BTreeMap::new();
    for kind in &kinds {
        let (status, slug) = kind.problem();
        by_status.entry(status).or_default().push(slug);
    }

    let rate_limited = kinds.contains(&Kind::RateLimited);
    let mut ok = match &op.success {
        Success::Json {
            status,
            schema,
            description,
        } => (
            *status,
            ResponseBuilder::new().description(*description).content(
                "application/json",
                ContentBuilder::new().schema(Some(schema(schemas))).build(),
            ),
        ),
        Success::EventStream { event, description } => {
            let event = event(schemas);
            let name = match &event {
                RefOr::Ref(r) => r
                    .ref_location
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                RefOr::T(_) => String::new(),
            };
            (
                200,
                ResponseBuilder::new()
                    .description(format!(
                        "{description} `text/event-stream`: each `data:` line is a `{name}` \
                         as JSON and `id:` its resume point; `:` comments keep the connection \
                         alive and announce its end."
                    ))
                    .content("text/event-stream", Content::new(Some(sse_event(event)))),
            )
        }
        Success::Markdown => (
            200,
            ResponseBuilder::new()
                .description("The dossier as Markdown (`Content-Disposition: attachment`).")
                .content("text/markdown", Content::new(Some(string()))),
        ),
    };
    for (name, header) in success_headers(route, rate_limited) {
        ok.1 = ok.1.header(name, header);
    }
    for (target, parameter, expression) in op.links {
        ok.1 = ok.1.link(
            *target,
            utoipa::openapi::link::LinkBuilder::new()
                .operation_id(*target)
                .parameter(*parameter, *expression)
                .build(),
        );
    }
    let mut responses = ResponsesBuilder::new().response(ok.0.to_string(), ok.1.build());
    for (status, slugs) in &by_status {
        let name = response_name(slugs);
        if !shared.contains_key(&name) {
            let response = problem_response(*status, slugs, schemas).build();
            shared.insert(name.clone(), response);
        }
        responses = responses.response(status.to_string(), Ref::from_response_name(name));
    }

    let mut builder = OperationBuilder::new()
        .operation_id(Some(op.id))
        .tag(op.tag)
        .summary(Some(op.summary))
        .description(Some(format!(
            "Served by the `{}` function. {} Bodies larger than {} bytes are refused \
             unread (`413`).",
            route.function,
            needs(route),
            route.max_body_bytes
        )))
        .responses(responses.build());
    for p in op.params {
        builder = builder.parameter(
            ParameterBuilder::new()
                .name(p.name)
                .parameter_in(p.place.clone())
                .required(if p.required {
                    Required::True
                } else {
                    Required::False
                })
                .description(Some(p.description))
                .schema(Some((p.schema)())),
        );
    }
    if let Some(body) = op.body {
        builder = builder.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(if op.body_required {
                    Required::True
                } else {
                    Required::False
                }))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(body(schemas))).build(),
                )
                .build(),
        ));
    }
    if route.authenticated {
        builder = builder.securities(Some(
            route
                .scopes
                .iter()
                .map(|scope| SecurityRequirement::new(BEARER, [*scope])),
        ));
    } else {
        // Public: explicitly no security requirement.
        builder = builder.securities(Some([SecurityRequirement::default()]));
    }
    builder.build()
}

/// What a route asks of its caller, in words.
fn needs(route: &Route) -> String {
    if !route.authenticated {
        return "Public: no token needed.".into();
    }
    let roles: Vec<&str> = ["submitter", "observer", "reviewer", "review_admin"]
        .into_iter()
        .filter(|role| role_scopes(role).iter().any(|s| route.scopes.contains(s)))
        .collect();
    format!(
        "Needs a bearer token with {} (roles: {}).",
        route
            .scopes
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(" or "),
        roles.join(", ")
    )
}

/// The whole description.
pub fn document() -> OpenApi {
    let mut schemas = Schemas::new();
    let mut shared = Responses::new();
    schema_of::<FieldError>(&mut schemas);
    let mut paths = PathsBuilder::new();
    let mut items: BTreeMap<&str, Vec<(HttpMethod, utoipa::openapi::path::Operation)>> =
        BTreeMap::new();
    for op in operations() {
        for method in op.route.methods {
            let method = match *method {
                "GET" => HttpMethod::Get,
                "POST" => HttpMethod::Post,
                "PUT" => HttpMethod::Put,
                "PATCH" => HttpMethod::Patch,
                "DELETE" => HttpMethod::Delete,
                other => panic!("no OpenAPI method for {other}"),
            };
            items
                .entry(op.route.path)
                .or_default()
                .push((method, operation(&op, &mut schemas, &mut shared)));
        }
    }
    for (path, operations) in items {
        let mut item: Option<PathItem> = None;
        for (method, operation) in operations {
            let next = PathItem::new(method, operation);
            match &mut item {
                Some(existing) => existing.merge_operations(next),
                None => item = Some(next),
            }
        }
        if let Some(item) = item {
            paths = paths.path(path, item);
        }
    }
    let components: Components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .responses_from_iter(shared)
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from the deployment's issuer (HS256 or RS256 as configured). \
                         Scopes come from its `scope`/`scopes` claims and from its `roles`: \
                         submitter → tasks:submit; observer → reviews:read, reports:read, \
                         tasks:read; reviewer → also reviews:write; review_admin → also \
                         reviews:admin.",
                    ))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("NeuraForge API")
                .version("1")
                .description(Some(
                    "Tasks run by teams of AI agents, checked by guardrails, escalated to human \
                     reviewers. Errors are RFC 9457 problems (`application/problem+json`) whose \
                     `type` is stable. Generated from the code by `devstack openapi`; do not edit.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .tags(Some(
            [
                ("tasks", "Submit tasks and follow them."),
                (
                    "history",
                    "Your own tasks, as v1's console lists them, and their transcripts.",
                ),
                ("reviews", "The human review queue."),
                ("reports", "Dossiers of tasks."),
                ("health", "Liveness and readiness, without a token."),
            ]
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(name)
                    .description(Some(description))
                    .build()
            }),
        ))
        .build()
}

/// The description as YAML, as committed in `docs/openapi.yaml`.
pub fn to_json() -> serde_json::Value {
    serde_json::to_value(document()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described_once_with_its_methods() {
        let doc = to_json();
        for route in routes::ALL {
            for method in route.methods {
                let op = &doc["paths"][route.path][method.to_ascii_lowercase()];
                assert!(op.is_object(), "{method} {} is not described", route.path);
            }
        }
        let methods: usize = routes::ALL.iter().map(|r| r.methods.len()).sum();
        assert_eq!(
            operations().len(),
            methods,
            "one operation per route and method"
        );
        let ids: std::collections::BTreeSet<&str> = operations().iter().map(|o| o.id).collect();
        assert_eq!(ids.len(), methods, "operation ids are unique");
    }

    #[test]
    fn authenticated_operations_need_their_routes_scopes_and_public_ones_none() {
        let doc = to_json();
        let op = &doc["paths"]["/api/v1/tasks/{task_id}"]["get"];
        assert_eq!(
            op["security"],
            serde_json::json!([
                {"bearer": [crate::auth::scopes::TASKS_READ]},
                {"bearer": [crate::auth::scopes::TASKS_SUBMIT]}
            ])
        );
        assert_eq!(
            doc["paths"]["/api/v1/health"]["get"]["security"],
            serde_json::json!([{}])
        );
        assert!(op["responses"]["401"].is_object() && op["responses"]["403"].is_object());
        assert!(doc["paths"]["/api/v1/health"]["get"]["responses"]["401"].is_null());
    }

    #[test]
    fn error_responses_name_the_problem_types_the_handlers_raise() {
        let doc = to_json();
        let responses = &doc["paths"]["/api/v1/submit_task"]["post"]["responses"];
        let shared = |status: &str| {
            let name = responses[status]["$ref"]
                .as_str()
                .unwrap()
                .trim_start_matches("#/components/responses/");
            doc["components"]["responses"][name].clone()
        };
        let types_of = |status: &str| {
            shared(status)["content"][PROBLEM_JSON]["schema"]["allOf"][1]["properties"]["type"]
                ["enum"]
                .clone()
        };
        assert_eq!(
            types_of("422"),
            serde_json::json!([problem_type(ApiError::Validation(vec![]).slug())])
        );
        assert_eq!(
            types_of("409"),
            serde_json::json!(["urn:neuraforge:problem:idempotency-key-reused"])
        );
        assert!(shared("429")["headers"]["Retry-After"].is_object());
    }
}
