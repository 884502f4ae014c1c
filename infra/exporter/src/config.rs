//! The exporter's configuration: which metrics it knows (type, help, buckets)
//! and its cardinality limits. `infra/exporter/exporter.yaml` is the one used
//! everywhere; a test checks it against the names the functions emit.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    #[serde(rename = "type")]
    pub kind: Kind,
    pub help: String,
    /// Upper bucket edges (histograms only); `+Inf` is added.
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
    /// Served (also) from what other metrics' EMF values say: v1's series, kept for v1's
    /// dashboards and alerts without a byte more of log per request.
    #[serde(default)]
    pub from: Vec<Derivation>,
}

/// One source of a derived metric: each value of `metric` whose labels pass `when` is
/// observed again under the derived name, with its labels reshaped.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derivation {
    pub metric: String,
    /// Only values whose label has one of the listed values.
    #[serde(default)]
    pub when: BTreeMap<String, Vec<String>>,
    /// Labels kept (`function` always is); absent: all of them. Series that differ only
    /// in a dropped label add up.
    #[serde(default)]
    pub keep: Option<Vec<String>>,
    /// Labels renamed: new name → the source's name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Label values replaced: label → (source value → served value).
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// Labels added with a fixed value.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

impl Derivation {
    /// The derived series' labels, or `None` when `when` filters the value out.
    pub fn labels(&self, source: &[(String, String)]) -> Option<Vec<(String, String)>> {
        let value_of = |name: &str| source.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        for (label, allowed) in &self.when {
            if !value_of(label).is_some_and(|v| allowed.contains(v)) {
                return None;
            }
        }
        let mut out: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in source {
            let kept = k == "function" || self.keep.as_ref().is_none_or(|keep| keep.contains(k));
            let renamed_away = self.rename.values().any(|from| from == k);
            if kept && !renamed_away {
                out.insert(k.clone(), v.clone());
            }
        }
        for (to, from) in &self.rename {
            if let Some(v) = value_of(from) {
                out.insert(to.clone(), v.clone());
            }
        }
        for (label, map) in &self.values {
            if let Some(v) = out.get_mut(label)
                && let Some(replacement) = map.get(v.as_str())
            {
                *v = replacement.clone();
            }
        }
        for (k, v) in &self.set {
            out.insert(k.clone(), v.clone());
        }
        Some(out.into_iter().collect())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Series one metric may have; new series beyond it are dropped and counted.
    pub max_series_per_metric: usize,
    /// Series all metrics together may have.
    pub max_series_total: usize,
    /// A gauge series not refreshed for this long is no longer served.
    #[serde(default = "default_gauge_ttl")]
    pub gauge_ttl_seconds: u64,
}

fn default_gauge_ttl() -> u64 {
    300
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series_per_metric: 1000,
            max_series_total: 20_000,
            gauge_ttl_seconds: default_gauge_ttl(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub limits: Limits,
    /// Buckets for a histogram the catalogue does not list.
    pub default_buckets: Vec<f64>,
    /// Metrics by Prometheus name. A metric not listed is typed by its shape:
    /// `_total` → counter, a list of values → histogram, else gauge.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricSpec>,
}

impl Config {
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let config: Config = serde_yaml_ng::from_str(text)?;
        for (name, spec) in &config.metrics {
            anyhow::ensure!(
                crate::registry::valid_name(name),
                "{name} is not a valid Prometheus metric name"
            );
            match (spec.kind, &spec.buckets) {
                (Kind::Histogram, Some(b)) => check_buckets(name, b)?,
                (Kind::Histogram, None) => {}
                (_, Some(_)) => anyhow::bail!("{name}: only histograms have buckets"),
                _ => {}
            }
            for d in &spec.from {
                // Only what arrives in EMF feeds a derivation (derived values are not derived again).
                anyhow::ensure!(
                    config.metrics.contains_key(&d.metric),
                    "{name}: derived from {}, which is not in the catalogue",
                    d.metric
                );
                let labels = d
                    .keep
                    .iter()
                    .flatten()
                    .chain(d.rename.keys())
                    .chain(d.set.keys());
                for label in labels {
                    anyhow::ensure!(
                        crate::registry::valid_label_name(label),
                        "{name}: {label} is not a valid label name"
                    );
                }
            }
        }
        check_buckets("default_buckets", &config.default_buckets)?;
        Ok(config)
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Self::from_yaml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The metrics derived from `source`, with how.
    pub fn derived_from<'a>(
        &'a self,
        source: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Derivation)> + 'a {
        self.metrics.iter().flat_map(move |(name, spec)| {
            spec.from
                .iter()
                .filter(move |d| d.metric == source)
                .map(move |d| (name.as_str(), d))
        })
    }

    pub fn buckets_of(&self, name: &str) -> Vec<f64> {
        self.metrics
            .get(name)
            .and_then(|m| m.buckets.clone())
            .unwrap_or_else(|| self.default_buckets.clone())
    }
}

fn check_buckets(name: &str, buckets: &[f64]) -> anyhow::Result<()> {
    anyhow::ensure!(!buckets.is_empty(), "{name}: buckets must not be empty");
    anyhow::ensure!(
        buckets.iter().all(|b| b.is_finite()) && buckets.windows(2).all(|w| w[0] < w[1]),
        "{name}: buckets must be finite and strictly increasing"
    );
    Ok(())
}
