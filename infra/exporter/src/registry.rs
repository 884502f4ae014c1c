//! EMF documents in, Prometheus series out.
//!
//! - Counters arrive as per-flush deltas and are summed into monotonic totals;
//!   a negative delta (a counter going backwards) is refused and counted.
//! - Gauges keep the last value until `limits.gauge_ttl_seconds` pass without
//!   a new one: a label value that stopped being reported (a reviewer with no
//!   tickets left, a function that stopped) disappears instead of lying.
//! - Histograms arrive as raw values (at most 100 per metric per document, the
//!   EMF limit) and are sorted into the configured buckets.
//! - Labels are the union of the directive's dimension sets (the finest
//!   grain: Prometheus sums the rest away); properties such as `request_id`
//!   never become labels.
//! - What cannot be used is skipped and counted by reason; the valid metrics of
//!   the same document are kept.

use crate::config::{Config, Kind};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;

/// EMF allows at most 100 values per metric in one document.
pub const MAX_VALUES_PER_METRIC: usize = 100;

/// Label pairs, sorted by name.
pub type Labels = Vec<(String, String)>;

#[derive(Debug, Clone)]
enum Series {
    Counter(f64),
    /// The last value and when it came: a gauge nobody refreshes expires.
    Gauge(f64, std::time::Instant),
    Histogram {
        /// Per bucket (not cumulative), then the `+Inf` overflow.
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug, Clone)]
struct Family {
    kind: Kind,
    help: String,
    buckets: Vec<f64>,
    series: BTreeMap<Labels, Series>,
}

/// Why (part of) a document was not used: the `reason` label of
/// `neuraforge_exporter_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reject {
    /// Not JSON, or truncated.
    InvalidJson,
    /// A JSON object without a usable `_aws.CloudWatchMetrics` directive.
    NotEmf,
    /// A directive, dimension or metric entry of the wrong shape, or a name Prometheus cannot carry.
    BadDirective,
    /// A dimension named by the directive has no string value in the document.
    MissingDimension,
    /// A metric value that is not a finite number (or list of them).
    NonNumeric,
    /// A value whose shape does not fit the metric's type (a list for a counter, …), or a
    /// metric name already used with another type.
    WrongType,
    /// A counter delta below zero.
    CounterDecrease,
    /// More than 100 values for one metric in one document.
    TooManyValues,
    /// A new series over the per-metric or total cap.
    SeriesLimit,
}

impl Reject {
    pub const ALL: [Reject; 9] = [
        Reject::InvalidJson,
        Reject::NotEmf,
        Reject::BadDirective,
        Reject::MissingDimension,
        Reject::NonNumeric,
        Reject::WrongType,
        Reject::CounterDecrease,
        Reject::TooManyValues,
        Reject::SeriesLimit,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Reject::InvalidJson => "invalid_json",
            Reject::NotEmf => "not_emf",
            Reject::BadDirective => "bad_directive",
            Reject::MissingDimension => "missing_dimension",
            Reject::NonNumeric => "non_numeric",
            Reject::WrongType => "wrong_type",
            Reject::CounterDecrease => "counter_decrease",
            Reject::TooManyValues => "too_many_values",
            Reject::SeriesLimit => "series_limit",
        }
    }
}

/// What one document did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: usize,
    pub rejected: Vec<Reject>,
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not reserved (`__…`).
pub fn valid_label_name(name: &str) -> bool {
    !name.starts_with("__") && !name.contains(':') && valid_name(name)
}

pub struct Registry {
    config: Config,
    families: BTreeMap<String, Family>,
    series_total: usize,
    /// The exporter's own counters.
    documents: BTreeMap<&'static str, u64>,
    rejected: BTreeMap<Reject, u64>,
    firehose: BTreeMap<&'static str, u64>,
}

impl Registry {
    pub fn new(config: Config) -> Self {
        // Every label value of the exporter's own counters starts at 0, so that
        // `rate()` sees the first rejection as an increase.
        let zeros = |keys: &[&'static str]| keys.iter().map(|k| (*k, 0)).collect();
        Registry {
            config,
            families: BTreeMap::new(),
            series_total: 0,
            documents: zeros(&["ok", "partial", "rejected", "not_emf"]),
            rejected: Reject::ALL.iter().map(|r| (*r, 0)).collect(),
            firehose: zeros(&[
                "ok",
                "duplicate",
                "unauthorized",
                "bad_request",
                "busy",
                "timeout",
                "too_large",
            ]),
        }
    }

    /// One line of a function's output: EMF documents are ingested; anything
    /// else (a JSON log line, cargo-lambda's own output) is counted and skipped.
    pub fn ingest_line(&mut self, line: &str) {
        let line = line.trim();
        // Not even JSON: skip the parse.
        let parsed = line
            .starts_with('{')
            .then(|| serde_json::from_str::<Value>(line));
        match parsed {
            Some(Ok(doc)) if doc.get("_aws").is_some() => {
                self.ingest(&doc);
            }
            // Only lines that look like EMF count as broken EMF; other lines are just logs.
            Some(Err(_)) if line.contains("\"_aws\"") => self.count_document(&Outcome {
                accepted: 0,
                rejected: vec![Reject::InvalidJson],
            }),
            _ => *self.documents.entry("not_emf").or_default() += 1,
        }
    }

    /// Counts a Firehose request outcome (`ok`, `unauthorized`, `bad_request`, `duplicate`).
    pub fn count_firehose(&mut self, outcome: &'static str) {
        *self.firehose.entry(outcome).or_default() += 1;
    }

    /// Counts a record that could not be decoded (base64 or gzip) or parsed.
    pub fn count_rejected(&mut self, reason: Reject) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    fn count_document(&mut self, outcome: &Outcome) {
        let label = if outcome.accepted > 0 && outcome.rejected.is_empty() {
            "ok"
        } else if outcome.accepted > 0 {
            "partial"
        } else {
            "rejected"
        };
        *self.documents.entry(label).or_default() += 1;
        for reason in &outcome.rejected {
            *self.rejected.entry(*reason).or_default() += 1;
        }
    }

    /// Ingests one EMF document.
    pub fn ingest(&mut self, doc: &Value) -> Outcome {
        let outcome = self.apply(doc);
        self.count_document(&outcome);
        outcome
    }

    fn apply(&mut self, doc: &Value) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(directives) = doc
            .get("_aws")
            .and_then(|a| a.get("CloudWatchMetrics"))
            .and_then(Value::as_array)
        else {
            outcome.rejected.push(Reject::NotEmf);
            return outcome;
        };
        if directives.is_empty() {
            outcome.rejected.push(Reject::NotEmf);
        }
        for directive in directives {
            // Labels: the union of the dimension sets.
            let Some(sets) = directive.get("Dimensions").and_then(Value::as_array) else {
                outcome.rejected.push(Reject::BadDirective);
                continue;
            };
            let mut keys: Vec<&str> = Vec::new();
            let mut bad = false;
            for set in sets {
                match set.as_array() {
                    Some(set) => {
                        for key in set {
                            match key.as_str() {
                                Some(k) if valid_label_name(k) => keys.push(k),
                                _ => bad = true,
                            }
                        }
                    }
                    None => bad = true,
                }
            }
            let Some(metrics) = directive.get("Metrics").and_then(Value::as_array) else {
                outcome.rejected.push(Reject::BadDirective);
                continue;
            };
            if bad {
                outcome.rejected.push(Reject::BadDirective);
                continue;
            }
            keys.sort_unstable();
            keys.dedup();
            let labels: Option<Labels> = keys
                .iter()
                .map(|k| {
                    doc.get(*k)
                        .and_then(Value::as_str)
                        .map(|v| (k.to_string(), v.to_string()))
                })
                .collect();
            let Some(labels) = labels else {
                outcome
                    .rejected
                    .extend(metrics.iter().map(|_| Reject::MissingDimension));
                continue;
            };
            for metric in metrics {
                let name = metric.get("Name").and_then(Value::as_str);
                match name {
                    Some(name) if valid_name(name) && name != "_aws" => {
                        match self.observe(name, &labels, doc.get(name)) {
                            Ok(()) => outcome.accepted += 1,
                            Err(reason) => outcome.rejected.push(reason),
                        }
                        self.observe_derived(name, &labels, doc.get(name));
                    }
                    _ => outcome.rejected.push(Reject::BadDirective),
                }
            }
        }
        outcome
    }

    /// The metrics served from `name`'s value too (see `config::Derivation`). The source's
    /// own outcome is what the document counts: a derived value fails only where it did.
    fn observe_derived(&mut self, name: &str, labels: &Labels, value: Option<&Value>) {
        let derived: Vec<(String, Labels)> = self
            .config
            .derived_from(name)
            .filter_map(|(to, d)| Some((to.to_string(), d.labels(labels)?)))
            .collect();
        for (to, labels) in derived {
            // From a histogram's values, a gauge keeps the last and a counter counts them.
            let kind = self.config.metrics.get(&to).map(|m| m.kind);
            let count;
            let value = match value {
                Some(Value::Array(items)) if kind == Some(Kind::Gauge) => items.last(),
                Some(Value::Array(items)) if kind == Some(Kind::Counter) => {
                    count = Value::from(items.len());
                    Some(&count)
                }
                other => other,
            };
            let _ = self.observe(&to, &labels, value);
        }
    }

    fn observe(
        &mut self,
        name: &str,
        labels: &Labels,
        value: Option<&Value>,
    ) -> Result<(), Reject> {
        let values: Vec<f64> = match value {
            Some(Value::Number(n)) => vec![n.as_f64().ok_or(Reject::NonNumeric)?],
            Some(Value::Array(items)) => {
                if items.len() > MAX_VALUES_PER_METRIC {
                    return Err(Reject::TooManyValues);
                }
                items
                    .iter()
                    .map(|v| v.as_f64().ok_or(Reject::NonNumeric))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(Reject::NonNumeric),
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Reject::NonNumeric);
        }
        let is_list = matches!(value, Some(Value::Array(_)));
        let kind = match self.config.metrics.get(name) {
            Some(spec) => spec.kind,
            None if name.ends_with("_total") => Kind::Counter,
            None if is_list => Kind::Histogram,
            None => Kind::Gauge,
        };
        match kind {
            Kind::Counter if is_list => return Err(Reject::WrongType),
            Kind::Counter if values[0] < 0.0 => return Err(Reject::CounterDecrease),
            Kind::Gauge if is_list => return Err(Reject::WrongType),
            _ => {}
        }
        let config = &self.config;
        let limits = &config.limits;
        // Help and buckets are looked up once, when the family first appears.
        let family = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                kind,
                help: config
                    .metrics
                    .get(name)
                    .map_or_else(|| format!("{name} (from EMF)"), |m| m.help.clone()),
                buckets: config.buckets_of(name),
                series: BTreeMap::new(),
            });
        if family.kind != kind {
            return Err(Reject::WrongType);
        }
        if !family.series.contains_key(labels) {
            // Expired gauges make room before a new series is refused.
            let ttl = std::time::Duration::from_secs(limits.gauge_ttl_seconds);
            let before = family.series.len();
            family
                .series
                .retain(|_, s| !matches!(s, Series::Gauge(_, at) if at.elapsed() > ttl));
            self.series_total -= before - family.series.len();
            if family.series.len() >= limits.max_series_per_metric
                || self.series_total >= limits.max_series_total
            {
                return Err(Reject::SeriesLimit);
            }
            let fresh = match kind {
                Kind::Counter => Series::Counter(0.0),
                Kind::Gauge => Series::Gauge(0.0, std::time::Instant::now()),
                Kind::Histogram => Series::Histogram {
                    counts: vec![0; family.buckets.len() + 1],
                    sum: 0.0,
                    count: 0,
                },
            };
            family.series.insert(labels.clone(), fresh);
            self.series_total += 1;
        }
        let buckets = &family.buckets;
        match family.series.get_mut(labels) {
            Some(Series::Counter(total)) => *total += values[0],
            Some(Series::Gauge(last, updated)) => {
                *last = values[values.len() - 1];
                *updated = std::time::Instant::now();
            }
            Some(Series::Histogram { counts, sum, count }) => {
                for v in &values {
                    let i = buckets
                        .iter()
                        .position(|edge| v <= edge)
                        .unwrap_or(buckets.len());
                    counts[i] += 1;
                    *sum += v;
                    *count += 1;
                }
            }
            None => unreachable!("inserted above"),
        }
        Ok(())
    }

    /// The Prometheus text exposition format (0.0.4), families and series sorted.
    pub fn render(&self) -> String {
        let ttl = std::time::Duration::from_secs(self.config.limits.gauge_ttl_seconds);
        let mut out = String::new();
        for (name, family) in &self.families {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, series) in &family.series {
                match series {
                    Series::Gauge(_, at) if at.elapsed() > ttl => {}
                    Series::Counter(v) | Series::Gauge(v, _) => {
                        let _ = writeln!(out, "{name}{} {}", label_set(labels, None), number(*v));
                    }
                    Series::Histogram { counts, sum, count } => {
                        let mut cumulative = 0;
                        for (i, edge) in family.buckets.iter().enumerate() {
                            cumulative += counts[i];
                            let le = bucket_bound(*edge);
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {cumulative}",
                                label_set(labels, Some(&le))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            label_set(labels, Some("+Inf"))
                        );
                        let _ = writeln!(
                            out,
                            "{name}_sum{} {}",
                            label_set(labels, None),
                            number(*sum)
                        );
                        let _ = writeln!(out, "{name}_count{} {count}", label_set(labels, None));
                    }
                }
            }
        }
        self.render_own(&mut out);
        out
    }

    fn render_own(&self, out: &mut String) {
        let mut counter = |name: &str, help: &str, label: &str, values: Vec<(&str, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (value, count) in values {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
            }
        };
        counter(
            "neuraforge_exporter_documents_total",
            "Lines and documents read, by outcome (ok, partial, rejected, not_emf)",
            "outcome",
            self.documents.iter().map(|(k, v)| (*k, *v)).collect(),
        );
        counter(
            "neuraforge_exporter_rejected_total",
            "Documents or metrics skipped, by reason",
            "reason",
            self.rejected
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect(),
        );
        counter(
            "neuraforge_exporter_firehose_requests_total",
            "Firehose HTTP endpoint deliveries, by outcome",
            "outcome",
            self.firehose.iter().map(|(k, v)| (*k, *v)).collect(),
        );
        let _ = writeln!(
            out,
            "# HELP neuraforge_exporter_series Series held, all metrics together"
        );
        let _ = writeln!(out, "# TYPE neuraforge_exporter_series gauge");
        let _ = writeln!(out, "neuraforge_exporter_series {}", self.series_total);
    }
}

/// Prometheus number formatting: shortest round-trip, `+Inf`/`-Inf`/`NaN`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// A bucket's `le` as Prometheus client libraries print it: a whole number keeps its `.0`
/// (`60.0`), which is also what Prometheus 3 normalises every bound to at ingestion, so a rule
/// selecting `le="60.0"` holds on Prometheus 2 and 3 alike.
fn bucket_bound(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        number(v)
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_set(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_value(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}
