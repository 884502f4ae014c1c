//! Reads `template.yaml` and resolves the intrinsics the local stack needs
//! (`Ref`, `Fn::GetAtt`, `Fn::Sub`), so that tables, queues, function
//! environments and event sources come from the template and nowhere else.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub const REGION: &str = "us-east-1";
/// moto's account id.
pub const ACCOUNT: &str = "123456789012";

#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: String,
    pub properties: Value,
    pub metadata: Value,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub parameters: BTreeMap<String, Value>,
    /// The `Conditions` section, evaluated by [`Resolver`] for `Fn::If`.
    pub conditions: Map<String, Value>,
    pub resources: BTreeMap<String, Resource>,
    pub function_globals: Value,
}

/// Short-form tags (`!Ref x`) become the long form (`{"Ref": "x"}`).
fn yaml_to_json(value: serde_yaml_ng::Value) -> Result<Value> {
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n)?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(yaml_to_json).collect::<Result<_>>()?)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    other => serde_yaml_ng::to_string(&other)?.trim().to_string(),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let inner = yaml_to_json(tagged.value)?;
            let name = tag.trim_start_matches('!');
            let long = if name == "Ref" {
                "Ref".to_string()
            } else {
                format!("Fn::{name}")
            };
            let inner = match (name, inner) {
                ("GetAtt", Value::String(s)) => {
                    let (res, attr) = s
                        .split_once('.')
                        .ok_or_else(|| anyhow!("bad !GetAtt {s}"))?;
                    Value::from(vec![res, attr])
                }
                (_, v) => v,
            };
            Value::Object(Map::from_iter([(long, inner)]))
        }
    })
}

impl Template {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).context("template.yaml is not valid YAML")?;
        let root = yaml_to_json(yaml)?;
        let parameters = root["Parameters"]
            .as_object()
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), v["Default"].clone()))
                    .collect()
            })
            .unwrap_or_default();
        let resources = root["Resources"]
            .as_object()
            .ok_or_else(|| anyhow!("template has no Resources"))?
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    Resource {
                        kind: r["Type"].as_str().unwrap_or_default().to_string(),
                        properties: r["Properties"].clone(),
                        metadata: r["Metadata"].clone(),
                    },
                )
            })
            .collect();
        let conditions = root["Conditions"].as_object().cloned().unwrap_or_default();
        Ok(Self {
            parameters,
            conditions,
            resources,
            function_globals: root["Globals"]["Function"].clone(),
        })
    }

    pub fn of_kind<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Resource)> + 'a {
        self.resources.iter().filter(move |(_, r)| r.kind == kind)
    }
}

/// What a resource is called locally, once created.
#[derive(Debug, Clone, Default)]
pub struct Physical {
    /// What `Ref` gives: a table name, a queue URL.
    pub reference: String,
    pub attributes: BTreeMap<String, String>,
}

/// Resolves intrinsics against local names. A dynamic reference
/// (`{{resolve:…}}`, a secret) cannot be resolved locally and is an error the
/// caller turns into "take it from the local environment file".
pub struct Resolver<'a> {
    pub template: &'a Template,
    pub stack_name: &'a str,
    pub physical: &'a BTreeMap<String, Physical>,
}

#[derive(Debug)]
pub enum Unresolvable {
    DynamicReference,
    /// An attribute of a resource only AWS has (the console's CloudFront distribution): a
    /// setting made of it is left unset locally.
    NotLocal(String),
    Other(String),
}

impl std::error::Error for Unresolvable {}

impl std::fmt::Display for Unresolvable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unresolvable::DynamicReference => {
                write!(f, "a dynamic reference (secret) has no local value")
            }
            Unresolvable::NotLocal(what) => write!(f, "{what} exists only in AWS"),
            Unresolvable::Other(why) => write!(f, "{why}"),
        }
    }
}

impl Resolver<'_> {
    fn reference(&self, name: &str) -> Result<String, Unresolvable> {
        match name {
            "AWS::Region" => return Ok(REGION.into()),
            "AWS::AccountId" => return Ok(ACCOUNT.into()),
            "AWS::StackName" => return Ok(self.stack_name.into()),
            "AWS::Partition" => return Ok("aws".into()),
            _ => {}
        }
        if let Some(p) = self.physical.get(name) {
            return Ok(p.reference.clone());
        }
        match self.template.parameters.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            // A parameter the deployer must supply (no Default) is unset locally: the functions
            // allow that only against the emulator (for example the token issuer and audience).
            Some(Value::Null) => Ok(String::new()),
            _ => Err(Unresolvable::Other(format!(
                "nothing local answers Ref {name}"
            ))),
        }
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String, Unresolvable> {
        let kind = self
            .template
            .resources
            .get(resource)
            .map(|r| r.kind.as_str());
        if kind.is_some_and(|k| k.starts_with("AWS::CloudFront::")) {
            return Err(Unresolvable::NotLocal(format!("{resource}.{attribute}")));
        }
        self.physical
            .get(resource)
            .and_then(|p| p.attributes.get(attribute))
            .cloned()
            .ok_or_else(|| {
                Unresolvable::Other(format!(
                    "nothing local answers GetAtt {resource}.{attribute}"
                ))
            })
    }

    /// A named condition of the template's `Conditions`, evaluated on the local values.
    fn condition(&self, name: &str) -> Result<bool, Unresolvable> {
        let definition = self
            .template
            .conditions
            .get(name)
            .ok_or_else(|| Unresolvable::Other(format!("no condition {name}")))?;
        self.truth(definition)
    }

    fn truth(&self, value: &Value) -> Result<bool, Unresolvable> {
        let bad = || Unresolvable::Other(format!("unsupported condition {value}"));
        let (key, arg) = value
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next())
            .ok_or_else(bad)?;
        let items = || arg.as_array().map(Vec::as_slice).unwrap_or_default();
        match key.as_str() {
            "Condition" | "Fn::Condition" => self.condition(arg.as_str().unwrap_or_default()),
            "Fn::Not" => match items() {
                [inner] => Ok(!self.truth(inner)?),
                _ => Err(bad()),
            },
            "Fn::Equals" => match items() {
                [a, b] => Ok(self.resolve(a)? == self.resolve(b)?),
                _ => Err(bad()),
            },
            "Fn::And" => items()
                .iter()
                .try_fold(true, |all, c| Ok(all && self.truth(c)?)),
            "Fn::Or" => items()
                .iter()
                .try_fold(false, |any, c| Ok(any || self.truth(c)?)),
            _ => Err(bad()),
        }
    }

    fn substitute(&self, text: &str) -> Result<String, Unresolvable> {
        if text.contains("{{resolve:") {
            return Err(Unresolvable::DynamicReference);
        }
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| Unresolvable::Other(format!("unclosed ${{ in {text}")))?;
            let name = &rest[start + 2..start + end];
            let value = match name.split_once('.') {
                Some((res, attr)) if !name.starts_with("AWS::") => self.attribute(res, attr)?,
                _ => self.reference(name)?,
            };
            out.push_str(&value);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Resolves a property value to a string (scalars) or JSON (anything else).
    pub fn resolve(&self, value: &Value) -> Result<Value, Unresolvable> {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next().expect("one entry");
                match key.as_str() {
                    "Ref" => Ok(Value::String(
                        self.reference(arg.as_str().unwrap_or_default())?,
                    )),
                    "Fn::GetAtt" => {
                        let parts: Vec<&str> = match arg {
                            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                            Value::String(s) => s.splitn(2, '.').collect(),
                            _ => vec![],
                        };
                        match parts.as_slice() {
                            [res, attr] => Ok(Value::String(self.attribute(res, attr)?)),
                            _ => Err(Unresolvable::Other(format!("bad Fn::GetAtt {arg}"))),
                        }
                    }
                    "Fn::If" => match arg.as_array().map(Vec::as_slice) {
                        Some([Value::String(condition), yes, no]) => {
                            if self.condition(condition)? {
                                self.resolve(yes)
                            } else {
                                self.resolve(no)
                            }
                        }
                        _ => Err(Unresolvable::Other(format!("bad Fn::If {arg}"))),
                    },
                    "Fn::Sub" => match arg {
                        Value::String(s) => Ok(Value::String(self.substitute(s)?)),
                        _ => Err(Unresolvable::Other(
                            "Fn::Sub with variables is not supported locally".into(),
                        )),
                    },
                    _ => {
                        let inner = self.resolve(arg)?;
                        Ok(Value::Object(Map::from_iter([(key.clone(), inner)])))
                    }
                }
            }
            Value::Object(map) => Ok(Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve(v)?)))
                    .collect::<Result<_, Unresolvable>>()?,
            )),
            Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v))
                    .collect::<Result<_, _>>()?,
            )),
            Value::String(s) if s.contains("{{resolve:") => Err(Unresolvable::DynamicReference),
            other => Ok(other.clone()),
        }
    }

    /// A scalar as a string (numbers and booleans too).
    pub fn resolve_string(&self, value: &Value) -> Result<String, Unresolvable> {
        match self.resolve(value)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(Unresolvable::Other(format!(
                "expected a scalar, got {other}"
            ))),
        }
    }
}

/// One event source of a function, as the template declares it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventSource {
    Api {
        path: String,
        method: String,
    },
    Sqs {
        queue: String,
        batch_size: i32,
        reports_batch_item_failures: bool,
    },
    Schedule {
        every_seconds: u64,
    },
    /// A table's stream (`Type: DynamoDB`), with the event names its filter lets through.
    DynamoDbStream {
        table: String,
        batch_size: i32,
        event_names: Vec<Vec<String>>,
    },
}

/// `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)`; cron is not emulated.
pub fn parse_rate(expression: &str) -> Result<u64> {
    let inner = expression
        .strip_prefix("rate(")
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| anyhow!("only rate(...) schedules run locally, not {expression}"))?;
    let (n, unit) = inner
        .trim()
        .split_once(' ')
        .ok_or_else(|| anyhow!("bad rate {expression}"))?;
    let n: u64 = n
        .parse()
        .with_context(|| format!("bad rate {expression}"))?;
    let unit_seconds = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        other => bail!("unknown rate unit {other}"),
    };
    Ok(n * unit_seconds)
}

/// The event source mappings (SQS queues, table streams) declared as their own resources
/// for the function `logical` (`AWS::Lambda::EventSourceMapping` with `FunctionName: {Ref:
/// logical}`).
pub fn mappings_of(template: &Template, logical: &str) -> Result<Vec<EventSource>> {
    let mut out = Vec::new();
    for (name, mapping) in template.of_kind("AWS::Lambda::EventSourceMapping") {
        let p = &mapping.properties;
        if p["FunctionName"]["Ref"].as_str() != Some(logical) {
            continue;
        }
        let source = &p["EventSourceArn"]["Fn::GetAtt"];
        let of = source[0].as_str().ok_or_else(|| {
            anyhow!("{name}: EventSourceArn must be Fn::GetAtt [Queue, Arn] or [Table, StreamArn]")
        })?;
        out.push(match source[1].as_str() {
            Some("StreamArn") => stream_source(of, p).with_context(|| name.clone())?,
            _ => sqs_source(of, p),
        });
    }
    Ok(out)
}

/// A table's stream source, with the event names its filter patterns let through.
fn stream_source(table: &str, p: &Value) -> Result<EventSource> {
    let event_names = p["FilterCriteria"]["Filters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| crate::streams::event_names(f["Pattern"].as_str().unwrap_or("")))
        .collect::<Result<_>>()?;
    Ok(EventSource::DynamoDbStream {
        table: table.to_string(),
        batch_size: p["BatchSize"].as_i64().unwrap_or(100) as i32,
        event_names,
    })
}

/// An SQS source from its queue and the properties SAM events and mappings share.
fn sqs_source(queue: &str, p: &Value) -> EventSource {
    EventSource::Sqs {
        queue: queue.to_string(),
        batch_size: p["BatchSize"].as_i64().unwrap_or(10) as i32,
        reports_batch_item_failures: p["FunctionResponseTypes"]
            .as_array()
            .is_some_and(|t| t.iter().any(|v| v == "ReportBatchItemFailures")),
    }
}

/// The event sources a function resource declares itself (`Events`).
pub fn events(function: &Resource) -> Result<Vec<EventSource>> {
    let mut out = Vec::new();
    for (name, event) in function.properties["Events"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let p = &event["Properties"];
        match event["Type"].as_str() {
            Some("Api") => out.push(EventSource::Api {
                path: p["Path"].as_str().unwrap_or_default().to_string(),
                method: p["Method"]
                    .as_str()
                    .unwrap_or_default()
                    .to_ascii_uppercase(),
            }),
            Some("SQS") => {
                let queue = p["Queue"]["Fn::GetAtt"][0].as_str().ok_or_else(|| {
                    anyhow!("event {name}: Queue must be Fn::GetAtt [Queue, Arn]")
                })?;
                out.push(sqs_source(queue, p));
            }
            Some("Schedule") | Some("ScheduleV2") => out.push(EventSource::Schedule {
                every_seconds: parse_rate(
                    p["Schedule"]
                        .as_str()
                        .or(p["ScheduleExpression"].as_str())
                        .unwrap_or(""),
                )?,
            }),
            other => bail!("event {name}: type {other:?} is not emulated locally"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tags_read_like_the_long_form() {
        let t = Template::parse(
            "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      A: !Ref X\n      B: !GetAtt Y.Arn\n      C: !Sub '${X}-z'\n",
        )
        .unwrap();
        let p = &t.resources["Q"].properties;
        assert_eq!(p["A"], serde_json::json!({"Ref": "X"}));
        assert_eq!(p["B"], serde_json::json!({"Fn::GetAtt": ["Y", "Arn"]}));
        assert_eq!(p["C"], serde_json::json!({"Fn::Sub": "${X}-z"}));
    }

    #[test]
    fn intrinsics_resolve_to_local_names_and_secrets_do_not() {
        let t = Template::parse(
            "Parameters:\n  P:\n    Type: String\n    Default: seven\nResources: {}\n",
        )
        .unwrap();
        let physical = BTreeMap::from([(
            "T".to_string(),
            Physical {
                reference: "local-T".into(),
                attributes: BTreeMap::from([("Arn".to_string(), "arn:t".to_string())]),
            },
        )]);
        let r = Resolver {
            template: &t,
            stack_name: "s",
            physical: &physical,
        };
        let v = |j: Value| r.resolve_string(&j);
        assert_eq!(v(serde_json::json!({"Ref": "T"})).unwrap(), "local-T");
        assert_eq!(v(serde_json::json!({"Ref": "P"})).unwrap(), "seven");
        assert_eq!(
            v(serde_json::json!({"Fn::GetAtt": ["T", "Arn"]})).unwrap(),
            "arn:t"
        );
        assert_eq!(
            v(serde_json::json!({"Fn::Sub": "${T.Arn}/index/x-${AWS::Region}"})).unwrap(),
            "arn:t/index/x-us-east-1"
        );
        assert!(matches!(
            v(serde_json::json!({"Fn::Sub": "{{resolve:secretsmanager:${P}}}"})),
            Err(Unresolvable::DynamicReference)
        ));
    }

    #[test]
    fn conditions_choose_a_branch_and_cloudfront_is_not_local() {
        let t = Template::parse(
            "Parameters:\n  O:\n    Type: String\n    Default: ''\n  S:\n    Type: String\n    Default: x\nConditions:\n  HasO: !Not [!Equals [!Ref O, '']]\n  HasS: !Not [!Equals [!Ref S, '']]\n  Both: !And [!Condition HasO, !Condition HasS]\nResources:\n  D:\n    Type: AWS::CloudFront::Distribution\n",
        )
        .unwrap();
        let physical = BTreeMap::new();
        let r = Resolver {
            template: &t,
            stack_name: "s",
            physical: &physical,
        };
        let v = |j: Value| r.resolve_string(&j);
        let pick = |c: &str| serde_json::json!({"Fn::If": [c, "yes", "no"]});
        assert_eq!(v(pick("HasS")).unwrap(), "yes");
        assert_eq!(v(pick("HasO")).unwrap(), "no");
        assert_eq!(v(pick("Both")).unwrap(), "no");
        assert!(matches!(v(pick("Nope")), Err(Unresolvable::Other(_))));
        // The console's origin defaults to its CloudFront domain, which only AWS has.
        let origin = serde_json::json!({"Fn::If": ["HasO", {"Ref": "O"}, {"Fn::Sub": "https://${D.DomainName}"}]});
        assert!(matches!(v(origin), Err(Unresolvable::NotLocal(_))));
    }

    #[test]
    fn rates_become_seconds() {
        assert_eq!(parse_rate("rate(1 minute)").unwrap(), 60);
        assert_eq!(parse_rate("rate(2 hours)").unwrap(), 7200);
        assert!(parse_rate("cron(0 * * * ? *)").is_err());
    }
}

/// An HTTP route the template declares, wherever it declares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeclaredRoute {
    pub path: String,
    pub method: String,
    /// The binary of the function behind it.
    pub function: String,
    /// Whether API Gateway streams the response.
    pub streaming: bool,
}

/// Routes from the functions' `Api` events and from the API's OpenAPI body
/// (where streaming routes live, since an `Api` event cannot stream).
pub fn declared_routes(template: &Template) -> Result<Vec<DeclaredRoute>> {
    let binary_of = |logical: &str| -> Option<String> {
        template.resources.get(logical)?.metadata["BuildProperties"]["Binary"]
            .as_str()
            .map(String::from)
    };
    let mut routes = Vec::new();
    for (logical, function) in template.of_kind("AWS::Serverless::Function") {
        for event in events(function)? {
            if let EventSource::Api { path, method } = event {
                let function =
                    binary_of(logical).ok_or_else(|| anyhow!("{logical} has no binary"))?;
                routes.push(DeclaredRoute {
                    path,
                    method,
                    function,
                    streaming: false,
                });
            }
        }
    }
    for (_, api) in template.of_kind("AWS::Serverless::Api") {
        for (path, methods) in api.properties["DefinitionBody"]["paths"]
            .as_object()
            .into_iter()
            .flatten()
        {
            for (method, operation) in methods.as_object().into_iter().flatten() {
                let integration = &operation["x-amazon-apigateway-integration"];
                let uri = integration["uri"]["Fn::Sub"].as_str().unwrap_or_default();
                let logical = uri
                    .split("${")
                    .filter_map(|part| part.split_once(".Arn}"))
                    .map(|(name, _)| name)
                    .next()
                    .ok_or_else(|| anyhow!("{path}: integration uri names no function"))?;
                let function = binary_of(logical)
                    .ok_or_else(|| anyhow!("{path}: {logical} is not a function"))?;
                let method = match method.as_str() {
                    "x-amazon-apigateway-any-method" => "ANY".to_string(),
                    m => m.to_ascii_uppercase(),
                };
                let streaming = integration["responseTransferMode"] == "STREAM"
                    && uri.contains("/2021-11-15/functions/")
                    && uri.ends_with("/response-streaming-invocations");
                routes.push(DeclaredRoute {
                    path: path.clone(),
                    method,
                    function,
                    streaming,
                });
            }
        }
    }
    routes.sort();
    Ok(routes)
}
