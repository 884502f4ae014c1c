//! The tool registry: what agents may call. Which tools an agent may use is
//! policy (its catalogue entry, narrowed by the task's `metadata.tools`, checked
//! by the `tool_allowlist.v1` guardrail); the registry only runs them.

use serde_json::{Value, json};
use std::time::Duration;

pub const CALCULATOR: &str = "calculator";
pub const JSON_QUERY: &str = "json_query";
pub const TEXT_STATS: &str = "text_stats";
pub const FETCH: &str = "fetch";
pub const ALL: &[&str] = &[CALCULATOR, JSON_QUERY, TEXT_STATS, FETCH];

/// Whether a tool's answer depends on its input alone (everything but `fetch`, which
/// reads the network): such a call is recomputed on a replay, not memoized.
pub fn deterministic(tool: &str) -> bool {
    [CALCULATOR, JSON_QUERY, TEXT_STATS].contains(&tool)
}

/// The metric label for a tool an agent asked for: a known name, else `unknown`
/// (an LLM backend may invent names; a label must stay a bounded set).
pub fn metric_label(requested: &str) -> &'static str {
    ALL.iter()
        .find(|t| **t == requested)
        .copied()
        .unwrap_or("unknown")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum ToolError {
    #[error("unknown tool {0}")]
    Unknown(String),
    #[error("bad input: {0}")]
    BadInput(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("failed: {0}")]
    Failed(String),
}

impl ToolError {
    /// The failure's kind, a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::Unknown(_) => "unknown_tool",
            ToolError::BadInput(_) => "bad_input",
            ToolError::Refused(_) => "refused",
            ToolError::Failed(_) => "failed",
        }
    }
}

/// Arithmetic on `+ - * / %`, parentheses and unary minus; nothing else.
pub fn calculate(expression: &str) -> Result<f64, ToolError> {
    struct Parser<'a> {
        chars: std::iter::Peekable<std::str::Chars<'a>>,
        depth: usize,
    }
    impl Parser<'_> {
        fn skip(&mut self) {
            while self.chars.peek().is_some_and(|c| c.is_whitespace()) {
                self.chars.next();
            }
        }
        fn expr(&mut self) -> Result<f64, ToolError> {
            let mut value = self.term()?;
            loop {
                self.skip();
                match self.chars.peek() {
                    Some('+') => {
                        self.chars.next();
                        value += self.term()?;
                    }
                    Some('-') => {
                        self.chars.next();
                        value -= self.term()?;
                    }
                    _ => return Ok(value),
                }
            }
        }
        fn term(&mut self) -> Result<f64, ToolError> {
            let mut value = self.factor()?;
            loop {
                self.skip();
                match self.chars.peek() {
                    Some('*') => {
                        self.chars.next();
                        value *= self.factor()?;
                    }
                    Some(op @ ('/' | '%')) => {
                        let op = *op;
                        self.chars.next();
                        let rhs = self.factor()?;
                        if rhs == 0.0 {
                            return Err(ToolError::BadInput("division by zero".into()));
                        }
                        value = if op == '/' { value / rhs } else { value % rhs };
                    }
                    _ => return Ok(value),
                }
            }
        }
        fn factor(&mut self) -> Result<f64, ToolError> {
            self.skip();
            self.depth += 1;
            if self.depth > 64 {
                return Err(ToolError::BadInput("expression nested too deeply".into()));
            }
            let result = match self.chars.peek() {
                Some('-') => {
                    self.chars.next();
                    self.factor().map(|v| -v)
                }
                Some('(') => {
                    self.chars.next();
                    let v = self.expr()?;
                    self.skip();
                    match self.chars.next() {
                        Some(')') => Ok(v),
                        _ => Err(ToolError::BadInput("missing )".into())),
                    }
                }
                Some(c) if c.is_ascii_digit() || *c == '.' => {
                    let mut number = String::new();
                    while let Some(c) = self
                        .chars
                        .peek()
                        .filter(|c| c.is_ascii_digit() || **c == '.')
                    {
                        number.push(*c);
                        self.chars.next();
                    }
                    number
                        .parse()
                        .map_err(|_| ToolError::BadInput(format!("bad number {number}")))
                }
                other => Err(ToolError::BadInput(format!("unexpected {other:?}"))),
            };
            self.depth -= 1;
            result
        }
    }
    if expression.len() > 256 {
        return Err(ToolError::BadInput(
            "expression longer than 256 characters".into(),
        ));
    }
    let mut parser = Parser {
        chars: expression.chars().peekable(),
        depth: 0,
    };
    let value = parser.expr()?;
    parser.skip();
    if let Some(c) = parser.chars.next() {
        return Err(ToolError::BadInput(format!("unexpected {c:?}")));
    }
    if !value.is_finite() {
        return Err(ToolError::BadInput("result is not finite".into()));
    }
    Ok(value)
}

/// The most of a fetched page a tool result keeps; reading stops there.
pub const FETCH_MAX_BYTES: usize = 16 * 1024;

/// Reads a response body up to `cap` bytes and stops: the rest is never read into
/// memory. Says whether there was more.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// Whether an address is on the public internet: not loopback, private, link-local
/// (the instance metadata service), shared, unspecified, multicast or documentation.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// Settings of the registry.
#[derive(Debug, Clone, Default)]
pub struct ToolConfig {
    /// Hosts `fetch` may reach (`TOOLS__FETCH_ALLOWED_HOSTS`, comma-separated). Empty: fetch is off.
    pub fetch_allowed_hosts: Vec<String>,
}

#[derive(Clone)]
pub struct ToolRegistry {
    config: ToolConfig,
}

/// What a tool sees besides its input.
pub struct ToolContext<'a> {
    pub prompt: &'a str,
    pub metadata: &'a serde_json::Map<String, Value>,
}

impl ToolRegistry {
    pub fn new(config: ToolConfig) -> Self {
        Self { config }
    }

    pub async fn invoke(
        &self,
        tool: &str,
        input: &Value,
        context: &ToolContext<'_>,
    ) -> Result<Value, ToolError> {
        match tool {
            CALCULATOR => {
                let expression = input["expression"]
                    .as_str()
                    .ok_or_else(|| ToolError::BadInput("expression is required".into()))?;
                Ok(json!({"expression": expression, "value": calculate(expression)?}))
            }
            JSON_QUERY => {
                let pointer = input["pointer"]
                    .as_str()
                    .ok_or_else(|| ToolError::BadInput("pointer is required".into()))?;
                let document = Value::Object(context.metadata.clone());
                Ok(json!({"pointer": pointer, "value": document.pointer(pointer).cloned()}))
            }
            TEXT_STATS => {
                let text = input["text"].as_str().unwrap_or(context.prompt);
                Ok(super::text::stats(text))
            }
            FETCH => {
                self.fetch(
                    input["url"]
                        .as_str()
                        .ok_or_else(|| ToolError::BadInput("url is required".into()))?,
                )
                .await
            }
            other => Err(ToolError::Unknown(other.to_string())),
        }
    }

    /// `https` on port 443 to an allow-listed host whose every address is public. The
    /// connection goes to the address that was checked (no second lookup, so DNS
    /// rebinding cannot reach loopback, the Lambda Runtime API or the metadata service),
    /// and reading stops at [`FETCH_MAX_BYTES`].
    async fn fetch(&self, url: &str) -> Result<Value, ToolError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| ToolError::BadInput(e.to_string()))?;
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self
            .config
            .fetch_allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&host))
        {
            return Err(ToolError::Refused(format!(
                "host {host} is not allow-listed"
            )));
        }
        if parsed.scheme() != "https" || parsed.port_or_known_default() != Some(443) {
            return Err(ToolError::Refused(
                "only https on port 443 may be fetched".into(),
            ));
        }
        // IPv6 literals come bracketed; resolving a literal just parses it.
        let name = host.trim_matches(['[', ']']);
        let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((name, 443))
            .await
            .map_err(|e| ToolError::Failed(format!("cannot resolve {host}: {e}")))?
            .collect();
        if addresses.is_empty() {
            return Err(ToolError::Failed(format!("{host} has no address")));
        }
        if let Some(bad) = addresses.iter().find(|a| !is_public(a.ip())) {
            return Err(ToolError::Refused(format!(
                "{host} resolves to a non-public address ({})",
                bad.ip()
            )));
        }
        // A client pinned to the checked addresses for this one request.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(&host, &addresses)
            .build()
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let response = client
            .get(parsed)
            .send()
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let status = response.status().as_u16();
        let (bytes, truncated) = read_capped(response, FETCH_MAX_BYTES)
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(json!({"url": url, "status": status, "text": text, "truncated": truncated}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_labels_are_the_known_names_or_unknown() {
        assert_eq!(metric_label("calculator"), "calculator");
        assert_eq!(metric_label("rm -rf /"), "unknown");
    }

    #[test]
    fn the_calculator_does_arithmetic_with_precedence() {
        assert_eq!(calculate("1 + 2 * 3").unwrap(), 7.0);
        assert_eq!(calculate("(1 + 2) * 3").unwrap(), 9.0);
        assert_eq!(calculate("-4 + 10 / 4").unwrap(), -1.5);
        assert_eq!(calculate("7 % 4").unwrap(), 3.0);
    }

    #[test]
    fn the_calculator_refuses_anything_else() {
        for bad in [
            "1 / 0",
            "2 +",
            "(1",
            "1 ) 2",
            "abs(3)",
            "1e999999",
            "",
            &"(".repeat(100),
        ] {
            assert!(calculate(bad).is_err(), "{bad:?}");
        }
    }

    fn context() -> (serde_json::Map<String, Value>, &'static str) {
        (
            json!({"customer": {"tier": "gold", "ids": [7, 8]}})
                .as_object()
                .unwrap()
                .clone(),
            "Count these words.",
        )
    }

    #[tokio::test]
    async fn json_query_reads_metadata_by_pointer() {
        let (metadata, prompt) = context();
        let registry = ToolRegistry::new(ToolConfig::default());
        let ctx = ToolContext {
            prompt,
            metadata: &metadata,
        };
        let out = registry
            .invoke(JSON_QUERY, &json!({"pointer": "/customer/ids/1"}), &ctx)
            .await
            .unwrap();
        assert_eq!(out["value"], 8);
        let missing = registry
            .invoke(JSON_QUERY, &json!({"pointer": "/nope"}), &ctx)
            .await
            .unwrap();
        assert_eq!(missing["value"], Value::Null);
    }

    #[tokio::test]
    async fn fetch_is_off_unless_the_host_is_allow_listed() {
        let (metadata, prompt) = context();
        let ctx = ToolContext {
            prompt,
            metadata: &metadata,
        };
        let registry = ToolRegistry::new(ToolConfig::default());
        let err = registry
            .invoke(FETCH, &json!({"url": "https://example.com/x"}), &ctx)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ToolError::Refused("host example.com is not allow-listed".into())
        );
    }

    #[tokio::test]
    async fn fetch_goes_only_over_https_to_public_addresses() {
        let (metadata, prompt) = context();
        let ctx = ToolContext {
            prompt,
            metadata: &metadata,
        };
        let hosts = [
            "example.com",
            "localhost",
            "169.254.169.254",
            "10.1.2.3",
            "[::1]",
        ];
        let registry = ToolRegistry::new(ToolConfig {
            fetch_allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        });
        for (url, why) in [
            ("http://example.com/x", "plain http"),
            ("https://example.com:8443/x", "another port"),
            ("https://localhost/x", "a name that resolves to loopback"),
            (
                "https://169.254.169.254/latest/meta-data/",
                "the metadata service",
            ),
            ("https://10.1.2.3/x", "a private address"),
            ("https://[::1]/x", "IPv6 loopback"),
        ] {
            let err = registry
                .invoke(FETCH, &json!({ "url": url }), &ctx)
                .await
                .unwrap_err();
            assert!(matches!(err, ToolError::Refused(_)), "{why}: {err:?}");
        }
    }

    #[test]
    fn only_public_addresses_count_as_public() {
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn unknown_tools_and_missing_inputs_are_errors() {
        let (metadata, prompt) = context();
        let ctx = ToolContext {
            prompt,
            metadata: &metadata,
        };
        let registry = ToolRegistry::new(ToolConfig::default());
        assert!(matches!(
            registry.invoke("shell", &json!({}), &ctx).await,
            Err(ToolError::Unknown(_))
        ));
        assert!(matches!(
            registry.invoke(CALCULATOR, &json!({}), &ctx).await,
            Err(ToolError::BadInput(_))
        ));
        assert_eq!(
            registry.invoke(TEXT_STATS, &json!({}), &ctx).await.unwrap()["words"],
            3
        );
    }
}
