//! `POST /api/v1/submit_task`: parse, record, enqueue.
//!
//! The body is parsed into a [`NewTask`] once, at the edge; past that point it
//! is known to be valid. Acceptance is the DynamoDB write, and the only write: the
//! tasks table's stream hands the new task to the enqueuer (`tasks::enqueue`), so an
//! accepted task is never lost to a failed `SendMessage` (see `docs/architecture.md`).

use super::ledger::SubmissionLedger;
use super::model::{EntryPoint, Task, TaskId, TaskStatus};
use super::store::{CreateOutcome, IdempotencyClaim, TaskStore};
use crate::config::{ConfigError, Settings};
use crate::http::problem::{ApiError, FieldError};
use crate::http::{self, ApiHandler, RequestContext, json_response};
use crate::ratelimit::{RateLimitPolicy, RateStatus};
use crate::routes::{self, Route};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// The names a task's `metadata.agents`, `.tools` and `.policies` may list: the
/// executor's catalogue, handed in by whoever builds a submit route.
#[derive(Debug, Clone, Default)]
pub struct MetadataChoices {
    pub agents: Vec<&'static str>,
    pub tools: Vec<&'static str>,
    pub policies: Vec<&'static str>,
}

impl MetadataChoices {
    /// Each of the three keys, when present, must be a non-empty list of known names.
    pub fn validate(&self, metadata: &Map<String, Value>) -> Vec<FieldError> {
        let checks: [(&str, &str, &[&str]); 3] = [
            ("agents", "agent", &self.agents),
            ("tools", "tool", &self.tools),
            ("policies", "policy", &self.policies),
        ];
        let mut errors = Vec::new();
        for (key, noun, known) in checks {
            let Some(value) = metadata.get(key) else {
                continue;
            };
            let field = format!("metadata.{key}");
            match value.as_array() {
                Some(items) if !items.is_empty() => {
                    for item in items {
                        match item.as_str() {
                            Some(name) if known.contains(&name) => {}
                            Some(name) => errors.push(FieldError::new(
                                &field,
                                format!("unknown {noun} {name:?}; known: {}", known.join(", ")),
                            )),
                            None => {
                                errors.push(FieldError::new(&field, "must list names as strings"))
                            }
                        }
                    }
                }
                _ => errors.push(FieldError::new(&field, "must be a non-empty list")),
            }
        }
        errors
    }
}

/// Size limits for a submission. Defaults keep a task item far below DynamoDB's 400 KB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLimits {
    pub max_body_bytes: usize,
    pub max_prompt_chars: usize,
    pub max_metadata_bytes: usize,
}

impl Default for TaskLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 100 * 1024,
            max_prompt_chars: 20_000,
            max_metadata_bytes: 16 * 1024,
        }
    }
}

impl TaskLimits {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            max_body_bytes: settings.bounded_or(
                "TASKS__MAX_BODY_BYTES",
                d.max_body_bytes,
                1024..=256 * 1024,
            )?,
            max_prompt_chars: settings.bounded_or(
                "TASKS__MAX_PROMPT_CHARS",
                d.max_prompt_chars,
                1..=50_000,
            )?,
            max_metadata_bytes: settings.bounded_or(
                "TASKS__MAX_METADATA_BYTES",
                d.max_metadata_bytes,
                2..=64 * 1024,
            )?,
        })
    }
}

/// A submission's body (`POST /api/v1/submit_task` and `/submit_task/stream`). v1's
/// `{"payload": {…}}` wrapper around the same fields is accepted too.
#[derive(Debug, Clone, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubmitTaskRequest {
    /// What the agents should do: not blank, at most `TASKS__MAX_PROMPT_CHARS` characters.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, pattern = r"\S"))]
    pub prompt: String,
    /// Free-form, at most `TASKS__MAX_METADATA_BYTES` as JSON; `agents`, `tools` and
    /// `policies`, when present, list known names. `{}` when absent (v1 refused `null`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
    /// A task of the caller's to continue from.
    pub continuation_task_id: Option<TaskId>,
}

/// The task is recorded and will run (v1 answered `200`, kept); `Location` names it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AcceptedBody {
    pub task_id: TaskId,
    /// `queued`.
    pub status: TaskStatus,
}

/// A valid submission.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub prompt: String,
    pub metadata: Map<String, Value>,
    pub continuation_task_id: Option<TaskId>,
}

impl NewTask {
    /// SHA-256 of the submission in a canonical form: key order and the
    /// `{"payload": …}` wrapper do not change it, any content change does.
    pub fn fingerprint(&self) -> String {
        let canonical = canonical_json(&json!({
            "prompt": self.prompt,
            "metadata": self.metadata,
            "continuation_task_id": self.continuation_task_id,
        }));
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }
}

/// JSON with object keys sorted at every level, whatever order the client sent.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(canonical_json)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        other => other.to_string(),
    }
}

/// Parses a submission body. `413` oversize, `415` non-JSON content type,
/// `400` malformed JSON, `422` a well-formed body that fails validation.
pub fn parse_submission(
    content_type: Option<&str>,
    body: &[u8],
    limits: &TaskLimits,
    choices: &MetadataChoices,
) -> Result<NewTask, ApiError> {
    if body.len() > limits.max_body_bytes {
        return Err(ApiError::PayloadTooLarge {
            limit: limits.max_body_bytes,
        });
    }
    if let Some(ct) = content_type {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::Validation(vec![FieldError::new(
            "body",
            crate::http::problem::REQUIRED,
        )]));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let Value::Object(mut object) = value else {
        return Err(ApiError::Validation(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    };
    // v1 also accepted {"payload": {...}}.
    if !object.contains_key("prompt") {
        match object.remove("payload") {
            Some(Value::Object(inner)) => object = inner,
            Some(_) => {
                return Err(ApiError::Validation(vec![FieldError::new(
                    "payload",
                    "must be an object",
                )]));
            }
            None => {}
        }
    }

    let mut errors = Vec::new();
    let prompt = match object.remove("prompt") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("prompt", crate::http::problem::REQUIRED));
            None
        }
        Some(Value::String(p)) if p.trim().is_empty() => {
            errors.push(FieldError::new("prompt", "must not be empty"));
            None
        }
        Some(Value::String(p)) if p.chars().count() > limits.max_prompt_chars => {
            errors.push(FieldError::new(
                "prompt",
                format!("must be at most {} characters", limits.max_prompt_chars),
            ));
            None
        }
        Some(Value::String(p)) => Some(p),
        Some(_) => {
            errors.push(FieldError::new("prompt", "must be a string"));
            None
        }
    };
    let metadata = match object.remove("metadata") {
        None => Some(Map::new()),
        Some(Value::Object(m)) => {
            if Value::Object(m.clone()).to_string().len() > limits.max_metadata_bytes {
                errors.push(FieldError::new(
                    "metadata",
                    format!(
                        "must be at most {} bytes as JSON",
                        limits.max_metadata_bytes
                    ),
                ));
                None
            } else {
                errors.extend(choices.validate(&m));
                Some(m)
            }
        }
        Some(_) => {
            errors.push(FieldError::new("metadata", "must be an object"));
            None
        }
    };
    let continuation_task_id = match object.remove("continuation_task_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(raw)) => match TaskId::parse(&raw) {
            Some(id) => Some(id),
            None => {
                errors.push(FieldError::new(
                    "continuation_task_id",
                    "must be a task id (UUID)",
                ));
                None
            }
        },
        Some(_) => {
            errors.push(FieldError::new("continuation_task_id", "must be a string"));
            None
        }
    };
    match (prompt, metadata) {
        (Some(prompt), Some(metadata)) if errors.is_empty() => Ok(NewTask {
            prompt,
            metadata,
            continuation_task_id,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// `Idempotency-Key`: 1–255 visible ASCII characters, or absent.
pub fn parse_idempotency_key(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        None => Ok(None),
        Some(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_CHARS
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_string()))
        }
        Some(_) => Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"
        ))),
    }
}

/// The answer for a continuation of a task that is missing or not the caller's.
pub const CONTINUATION_NOT_FOUND: &str = "names no task of yours";

/// Whether `subject` may continue `parent`: only its submitter may (checked at
/// submission and again by the worker before it reads the parent's output).
pub fn may_continue(subject: &str, parent: &Task) -> bool {
    parent.submitted_by == subject
}

/// Settings of the submit function.
#[derive(Debug, Clone)]
pub struct SubmitConfig {
    pub limits: TaskLimits,
    /// What `metadata.agents`, `.tools` and `.policies` may name.
    pub choices: MetadataChoices,
    /// Submissions per principal (`RATE_LIMIT__TASK_SUBMISSION__*`, 6 per 60 s).
    pub rate_limit: RateLimitPolicy,
}

impl SubmitConfig {
    pub fn from_settings(
        settings: &Settings,
        choices: MetadataChoices,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            limits: TaskLimits::from_settings(settings)?,
            choices,
            rate_limit: RateLimitPolicy::task_submission(settings)?,
        })
    }
}

/// An accepted submission.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub task_id: TaskId,
    /// An idempotent replay of an earlier submission (nothing new was created).
    pub replayed: bool,
    /// Where the caller stands against its rate limit (headers for the response).
    pub rate: Option<RateStatus>,
}

pub struct SubmitTaskApi {
    /// The submission limit's counter, which also lists the caller's tasks.
    pub ledger: SubmissionLedger,
    pub store: TaskStore,
    pub config: SubmitConfig,
}

impl SubmitTaskApi {
    /// Authenticates, validates, records and enqueues a submission. Returns the
    /// task id and whether it is an idempotent replay of an earlier submission.
    pub async fn accept(
        &self,
        request: &Request,
        cx: &RequestContext,
        entry_point: EntryPoint,
    ) -> Result<Accepted, ApiError> {
        let principal = cx.principal()?;
        let key = parse_idempotency_key(http::header_str(request, IDEMPOTENCY_KEY_HEADER))?;
        let task_id = key.as_deref().map_or_else(TaskId::new, |key| {
            TaskId::for_idempotency_key(&principal.subject, key)
        });
        // Counted before validation: a flood of bad requests is limited too. The ledger
        // lists the id now; one that never becomes a task is skipped where it is read.
        let rate = self
            .ledger
            .admit(
                &self.config.rate_limit,
                &principal.subject,
                task_id,
                self.ledger.now_millis(),
            )
            .await?;
        let new_task = parse_submission(
            http::header_str(request, header::CONTENT_TYPE.as_str()),
            http::body_bytes(request),
            &self.config.limits,
            &self.config.choices,
        )?;

        if let Some(parent_id) = new_task.continuation_task_id {
            self.check_continuation(parent_id, &principal.subject)
                .await?;
        }

        let now = crate::time::now_millis();
        let claim = key.as_ref().map(|_| IdempotencyClaim {
            request_hash: new_task.fingerprint(),
        });
        let task = Task {
            task_id,
            status: TaskStatus::Queued,
            prompt: new_task.prompt,
            metadata: new_task.metadata,
            continuation_task_id: new_task.continuation_task_id,
            submitted_by: principal.subject.clone(),
            request_id: cx.request_id.clone(),
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            attempts: 0,
            result: None,
            last_error: None,
            failures: Vec::new(),
            entry_point,
        };

        match self.store.create(&task, claim.as_ref()).await? {
            CreateOutcome::Created(_) => {
                crate::telemetry::record_task_accepted(match entry_point {
                    EntryPoint::SubmitTask => &routes::SUBMIT_TASK,
                    EntryPoint::SubmitTaskStream => &routes::SUBMIT_TASK_STREAM,
                });
                // The audit record names the task: request, caller and task in one line.
                crate::audit::note_target(task.task_id);
                Ok(Accepted {
                    task_id: task.task_id,
                    replayed: false,
                    rate,
                })
            }
            CreateOutcome::Replayed(task_id) => {
                crate::audit::note_target(task_id);
                Ok(Accepted {
                    task_id,
                    replayed: true,
                    rate,
                })
            }
            CreateOutcome::KeyReused => Err(ApiError::IdempotencyConflict),
        }
    }

    /// A task continues only one of its submitter's own tasks. A missing parent and
    /// somebody else's answer alike, so the check reveals nothing about other tenants.
    async fn check_continuation(&self, parent_id: TaskId, subject: &str) -> Result<(), ApiError> {
        match self.store.get(parent_id).await? {
            Some(parent) if may_continue(subject, &parent) => Ok(()),
            _ => Err(ApiError::Validation(vec![FieldError::new(
                "continuation_task_id",
                CONTINUATION_NOT_FOUND,
            )])),
        }
    }
}

/// The `200` a submission answers: the task id, `queued`, its `Location`, the rate-limit headers.
pub fn accepted(accepted: &Accepted) -> Result<Response<Body>, ApiError> {
    let task_id = accepted.task_id;
    let mut response = json_response(
        StatusCode::OK,
        &AcceptedBody {
            task_id,
            status: TaskStatus::Queued,
        },
    )?;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/tasks/{task_id}")) {
        headers.insert(header::LOCATION, location);
    }
    if accepted.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(rate) = &accepted.rate {
        rate.apply(headers);
    }
    Ok(response)
}

impl ApiHandler for SubmitTaskApi {
    fn route(&self) -> &'static Route {
        &routes::SUBMIT_TASK
    }

    async fn handle(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        accepted(&self.accept(&request, cx, EntryPoint::SubmitTask).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<NewTask, ApiError> {
        parse_submission(
            Some("application/json"),
            body.as_bytes(),
            &TaskLimits::default(),
            &MetadataChoices::default(),
        )
    }

    fn field_errors(result: Result<NewTask, ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Validation(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_flat_body_and_the_payload_form_give_the_same_task() {
        let flat = parse(r#"{"prompt":"hi","metadata":{"a":1,"b":2}}"#).unwrap();
        let wrapped = parse(r#"{"payload":{"metadata":{"b":2,"a":1},"prompt":"hi"}}"#).unwrap();
        assert_eq!(flat, wrapped);
        assert_eq!(flat.fingerprint(), wrapped.fingerprint());
        assert_ne!(
            flat.fingerprint(),
            parse(r#"{"prompt":"hi!"}"#).unwrap().fingerprint()
        );
    }

    #[test]
    fn metadata_defaults_to_an_empty_object() {
        let task = parse(r#"{"prompt":"x"}"#).unwrap();
        assert!(task.metadata.is_empty());
        assert_eq!(task.continuation_task_id, None);
    }

    #[test]
    fn each_invalid_field_is_named() {
        let cases: &[(&str, &[&str], &str)] = &[
            (r#"{}"#, &["prompt"], "missing prompt"),
            (r#"{"prompt":""}"#, &["prompt"], "empty prompt"),
            (r#"{"prompt":"   \n"}"#, &["prompt"], "blank prompt"),
            (r#"{"prompt":42}"#, &["prompt"], "prompt of the wrong type"),
            (r#"{"prompt":null}"#, &["prompt"], "null prompt"),
            (
                r#"{"prompt":"x","metadata":[]}"#,
                &["metadata"],
                "metadata as a list",
            ),
            (
                r#"{"prompt":"x","metadata":null}"#,
                &["metadata"],
                "null metadata",
            ),
            (
                r#"{"prompt":"x","continuation_task_id":"abc"}"#,
                &["continuation_task_id"],
                "non-UUID continuation",
            ),
            (
                r#"{"prompt":"x","continuation_task_id":7}"#,
                &["continuation_task_id"],
                "continuation of the wrong type",
            ),
            (
                r#"{"prompt":1,"metadata":2}"#,
                &["prompt", "metadata"],
                "two bad fields",
            ),
            (
                r#"{"payload":"x"}"#,
                &["payload"],
                "payload that is not an object",
            ),
            (r#"[1,2]"#, &["body"], "a list body"),
            (r#""#, &["body"], "an empty body"),
        ];
        for (body, fields, why) in cases {
            assert_eq!(field_errors(parse(body)), fields.to_vec(), "{why}");
        }
    }

    #[test]
    fn malformed_json_is_a_400_not_a_422() {
        assert!(matches!(
            parse(r#"{"prompt": "x""#),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(parse("prompt=x"), Err(ApiError::MalformedJson(_))));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = TaskLimits {
            max_body_bytes: 2048,
            max_prompt_chars: 10,
            max_metadata_bytes: 20,
        };
        let p =
            |b: &str| parse_submission(None, b.as_bytes(), &limits, &MetadataChoices::default());
        assert!(matches!(
            p(&format!(r#"{{"prompt":"{}"}}"#, "x".repeat(3000))),
            Err(ApiError::PayloadTooLarge { limit: 2048 })
        ));
        assert_eq!(
            field_errors(p(r#"{"prompt":"12345678901"}"#)),
            vec!["prompt"]
        );
        // Characters, not bytes: ten multi-byte characters fit.
        assert!(p(r#"{"prompt":"éééééééééé"}"#).is_ok());
        assert_eq!(
            field_errors(p(r#"{"prompt":"x","metadata":{"k":"0123456789012345"}}"#)),
            vec!["metadata"]
        );
    }

    #[test]
    fn only_json_content_types_are_accepted() {
        let limits = TaskLimits::default();
        let body = br#"{"prompt":"x"}"#;
        assert!(
            parse_submission(
                Some("application/json; charset=utf-8"),
                body,
                &limits,
                &MetadataChoices::default()
            )
            .is_ok()
        );
        assert!(
            parse_submission(
                Some("application/vnd.api+json"),
                body,
                &limits,
                &MetadataChoices::default()
            )
            .is_ok()
        );
        assert!(parse_submission(None, body, &limits, &MetadataChoices::default()).is_ok());
        assert!(matches!(
            parse_submission(
                Some("text/plain"),
                body,
                &limits,
                &MetadataChoices::default()
            ),
            Err(ApiError::UnsupportedMediaType)
        ));
    }

    #[test]
    fn idempotency_keys_must_be_short_visible_ascii() {
        assert_eq!(parse_idempotency_key(None).unwrap(), None);
        assert_eq!(
            parse_idempotency_key(Some("abc-123")).unwrap().as_deref(),
            Some("abc-123")
        );
        for bad in ["", "has space", "ünï", &"k".repeat(256)] {
            assert!(parse_idempotency_key(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
