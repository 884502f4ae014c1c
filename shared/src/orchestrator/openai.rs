//! An agent backend that speaks the OpenAI chat-completions API (or any server
//! compatible with it). Selected with `AGENTS__BACKEND=openai`.
//!
//! Each agent turn is one `POST {base_url}/chat/completions` with the agent's
//! role, the prompt, the previous turn's tool results, and the agent's allowed
//! tools as functions. Timeouts, 429 and 5xx are retried with exponential
//! backoff (honouring `Retry-After`); anything else fails the turn with a reason
//! and the engine's fallbacks and retry policy decide what happens next.

use super::agents::{AgentBackend, AgentError, AgentReply, AgentRequest, ToolCall};
use crate::config::{ConfigError, Settings};
use serde_json::{Value, json};
use std::time::Duration;

/// The key as a plain variable: for the local stack and tests; deployed stacks use
/// [`API_KEY_PARAMETER_SETTING`].
pub const API_KEY_SETTING: &str = "AGENTS__OPENAI_API_KEY";
/// The SSM SecureString holding the model provider's key, read once at cold start so
/// that the key never sits in the function's configuration.
pub const API_KEY_PARAMETER_SETTING: &str = "AGENTS__OPENAI_API_KEY_PARAMETER";

#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// For example `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    pub backoff: Duration,
}

impl OpenAiConfig {
    /// [`Self::from_settings`], with the key read from the SSM parameter
    /// `AGENTS__OPENAI_API_KEY_PARAMETER` names when it is set (and the plain variable
    /// then refused, so that nobody wonders which of two keys is in use).
    pub async fn load(
        sdk: &aws_config::SdkConfig,
        settings: &Settings<'_>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::from_settings(settings)?;
        if let Some(name) = settings.optional(API_KEY_PARAMETER_SETTING) {
            if config.api_key.is_some() {
                return Err(ConfigError {
                    setting: API_KEY_SETTING.into(),
                    problem: format!("must be unset when {API_KEY_PARAMETER_SETTING} is set"),
                });
            }
            config.api_key =
                Some(crate::aws::secure_parameter(sdk, API_KEY_PARAMETER_SETTING, &name).await?);
        }
        Ok(config)
    }

    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let base_url = settings
            .required("AGENTS__OPENAI_BASE_URL")?
            .trim_end_matches('/')
            .to_string();
        check_base_url(&base_url, settings.optional("AWS_ENDPOINT_URL").is_some())?;
        Ok(Self {
            base_url,
            model: settings.required("AGENTS__OPENAI_MODEL")?,
            api_key: settings.optional(API_KEY_SETTING),
            timeout: Duration::from_millis(settings.bounded_or(
                "AGENTS__TIMEOUT_MS",
                20_000,
                100..=120_000,
            )?),
            max_retries: settings.bounded_or("AGENTS__MAX_RETRIES", 2, 0..=5)?,
            backoff: Duration::from_millis(settings.bounded_or(
                "AGENTS__BACKOFF_MS",
                250,
                1..=10_000,
            )?),
        })
    }
}

/// The API key goes only over HTTPS; plain HTTP is allowed to a loopback stand-in,
/// and only in the local stack (an emulator endpoint configured).
pub fn check_base_url(base_url: &str, local_stack: bool) -> Result<(), ConfigError> {
    let refuse = |problem: &str| ConfigError {
        setting: "AGENTS__OPENAI_BASE_URL".into(),
        problem: problem.into(),
    };
    let url = reqwest::Url::parse(base_url).map_err(|_| refuse("is not a URL"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback && local_stack => Ok(()),
        _ => Err(refuse(
            "must be https (plain http only to a loopback server in the local stack)",
        )),
    }
}

/// The largest chat-completions response read; a larger one fails the step unread.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
pub struct OpenAiBackend {
    config: OpenAiConfig,
    http: reqwest::Client,
}

/// The confidence reported for a chat-completions answer, which carries none of its own.
pub const DEFAULT_CONFIDENCE: f64 = 0.7;

fn tool_schema(tool: &str) -> Value {
    let (description, parameters) = match tool {
        super::tools::CALCULATOR => (
            "Evaluate arithmetic (+ - * / % and parentheses).",
            json!({"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}),
        ),
        super::tools::JSON_QUERY => (
            "Read a value from the task metadata by JSON Pointer.",
            json!({"type": "object", "properties": {"pointer": {"type": "string"}}, "required": ["pointer"]}),
        ),
        super::tools::TEXT_STATS => (
            "Count words, sentences and key terms of a text (default: the prompt).",
            json!({"type": "object", "properties": {"text": {"type": "string"}}}),
        ),
        _ => (
            "Fetch a URL (allow-listed hosts only).",
            json!({"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}),
        ),
    };
    json!({"type": "function", "function": {"name": tool, "description": description, "parameters": parameters}})
}

/// The chat-completions request for one agent turn.
pub fn request_body(model: &str, request: &AgentRequest<'_>) -> Value {
    let agent = request.agent;
    let mut messages = vec![
        json!({"role": "system", "content": format!(
            "You are {}, the {} specialist of a team of agents. Answer the task from your point \
             of view in a few sentences. Use a tool only when it helps.",
            agent.id, agent.capability
        )}),
        json!({"role": "user", "content": request.prompt}),
    ];
    if !request.tool_results.is_empty() {
        messages.push(json!({"role": "user", "content": format!(
            "Results of the tools you asked for: {}. Now give your answer.",
            serde_json::to_string(&request.tool_results).unwrap_or_default()
        )}));
    }
    let mut body = json!({"model": model, "messages": messages, "temperature": 0});
    // No tools on the turn after tool results: the agent must answer.
    if request.tool_results.is_empty() && !request.tools.is_empty() {
        body["tools"] = Value::Array(request.tools.iter().map(|t| tool_schema(t)).collect());
    }
    body
}

/// Reads a chat-completions response into an agent reply.
pub fn parse_reply(body: &[u8]) -> Result<AgentReply, AgentError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| AgentError::BadReply("the response is not JSON".into()))?;
    let message = value
        .pointer("/choices/0/message")
        .ok_or_else(|| AgentError::BadReply("the response has no choices[0].message".into()))?;
    let tool_calls = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|call| {
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| AgentError::BadReply("a tool call has no name".into()))?;
            let raw = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            let input: Value = serde_json::from_str(raw).map_err(|_| {
                AgentError::BadReply(format!("the arguments of {name} are not JSON"))
            })?;
            Ok(ToolCall {
                tool: name.to_string(),
                input,
            })
        })
        .collect::<Result<Vec<_>, AgentError>>()?;
    let content = message["content"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    if tool_calls.is_empty() && content.is_empty() {
        return Err(AgentError::BadReply(
            "the reply has neither content nor tool calls".into(),
        ));
    }
    Ok(AgentReply {
        tool_calls,
        content,
        confidence: DEFAULT_CONFIDENCE,
        tokens: value
            .pointer("/usage/total_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

impl OpenAiBackend {
    pub fn new(config: OpenAiConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .expect("HTTP client");
        Self { config, http }
    }

    async fn attempt(&self, body: &Value) -> Result<AgentReply, (AgentError, Option<Duration>)> {
        let mut request = self
            .http
            .post(format!("{}/chat/completions", self.config.base_url))
            .json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            let err = if e.is_timeout() {
                AgentError::Timeout
            } else {
                AgentError::Unavailable("connection failed".into())
            };
            (err, None)
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(10)));
        let (bytes, truncated) = super::tools::read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| {
                (
                    if e.is_timeout() {
                        AgentError::Timeout
                    } else {
                        AgentError::Unavailable("response interrupted".into())
                    },
                    None,
                )
            })?;
        if truncated {
            return Err((
                AgentError::BadReply(format!("the response is over {MAX_RESPONSE_BYTES} bytes")),
                None,
            ));
        }
        if status.as_u16() == 429 || status.is_server_error() {
            return Err((
                AgentError::Unavailable(format!("HTTP {}", status.as_u16())),
                retry_after,
            ));
        }
        if !status.is_success() {
            return Err((
                AgentError::BadReply(format!("HTTP {}", status.as_u16())),
                None,
            ));
        }
        parse_reply(&bytes).map_err(|e| (e, None))
    }
}

impl AgentBackend for OpenAiBackend {
    fn name(&self) -> &'static str {
        "openai"
    }

    async fn complete(&self, request: &AgentRequest<'_>) -> Result<AgentReply, AgentError> {
        let body = request_body(&self.config.model, request);
        let mut attempt = 0;
        loop {
            match self.attempt(&body).await {
                Ok(reply) => return Ok(reply),
                // Only timeouts, 429 and 5xx are worth another try.
                Err((err @ (AgentError::Timeout | AgentError::Unavailable(_)), retry_after))
                    if attempt < self.config.max_retries =>
                {
                    let wait = retry_after.unwrap_or(self.config.backoff * 2u32.pow(attempt));
                    tracing::warn!(
                        agent = request.agent.id, error = %err, attempt,
                        wait_ms = wait.as_millis() as u64, "agent backend retry"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err((err, _)) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_goes_over_https_only_except_to_a_local_stand_in() {
        assert!(check_base_url("https://api.openai.com/v1", false).is_ok());
        assert!(check_base_url("http://api.openai.com/v1", false).is_err());
        assert!(
            check_base_url("http://api.openai.com/v1", true).is_err(),
            "not loopback"
        );
        assert!(
            check_base_url("http://127.0.0.1:8080/v1", false).is_err(),
            "not the local stack"
        );
        assert!(check_base_url("http://127.0.0.1:8080/v1", true).is_ok());
        assert!(check_base_url("http://[::1]:8080/v1", true).is_ok());
        assert!(check_base_url("ftp://x/v1", true).is_err());
    }

    #[test]
    fn replies_with_tool_calls_or_content_parse() {
        let reply = json!({
            "choices": [{"message": {"content": null, "tool_calls": [{
                "id": "1", "type": "function",
                "function": {"name": "calculator", "arguments": "{\"expression\":\"2*3\"}"},
            }]}}],
            "usage": {"total_tokens": 42},
        });
        let tools = parse_reply(reply.to_string().as_bytes()).unwrap();
        assert_eq!(
            tools.tool_calls,
            vec![ToolCall {
                tool: "calculator".into(),
                input: json!({"expression": "2*3"})
            }]
        );
        assert_eq!(tools.tokens, 42);
        let answer = parse_reply(br#"{"choices":[{"message":{"content":" Six. "}}]}"#).unwrap();
        assert_eq!(
            (answer.content.as_str(), answer.tool_calls.len()),
            ("Six.", 0)
        );
    }

    #[test]
    fn garbage_is_a_bad_reply_with_a_reason() {
        for (body, reason) in [
            (&b"<html>"[..], "the response is not JSON"),
            (
                br#"{"error":"x"}"#,
                "the response has no choices[0].message",
            ),
            (
                br#"{"choices":[{"message":{"content":""}}]}"#,
                "the reply has neither content nor tool calls",
            ),
            (
                br#"{"choices":[{"message":{"tool_calls":[
                    {"function":{"name":"calculator","arguments":"{oops"}}]}}]}"#,
                "the arguments of calculator are not JSON",
            ),
        ] {
            assert_eq!(parse_reply(body), Err(AgentError::BadReply(reason.into())));
        }
    }

    #[test]
    fn tools_are_offered_only_on_the_first_turn() {
        let metadata = serde_json::Map::new();
        let agent = super::super::agents::spec("finance_agent").unwrap();
        let mut request = AgentRequest {
            agent,
            prompt: "p",
            metadata: &metadata,
            tools: agent.tools.to_vec(),
            tool_results: vec![],
        };
        let body = request_body("m", &request);
        assert_eq!(body["tools"].as_array().unwrap().len(), 2);
        assert_eq!(body["messages"][1], json!({"role": "user", "content": "p"}));
        request.tool_results = vec![super::super::agents::ToolResult {
            tool: "calculator".into(),
            outcome: crate::orchestrator::agents::ToolOutcome::Ok,
            output: json!(6),
        }];
        let body = request_body("m", &request);
        assert!(body.get("tools").is_none());
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
    }
}
