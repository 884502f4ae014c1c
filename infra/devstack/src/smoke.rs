//! The post-deploy smoke (`devstack smoke`): what a deploy must prove before it is promoted.
//! Health and readiness, a request without a token refused, an authenticated submission that
//! runs to its end, its status, and its event stream from the first event to the last. It runs
//! the same against the local stack (tested in `tests/it/e2e.rs`) and a deployed stage (the
//! deploy workflow), one line per check; the first failure ends it.

use anyhow::{Context, Result, anyhow, bail, ensure};
use std::time::{Duration, Instant};

/// Statuses a task rests in: done, or waiting for a reviewer (which the smoke does not give).
const SETTLED: &[&str] = &["completed", "failed", "awaiting_review"];
/// A harmless prompt the built-in agents complete without a review.
const PROMPT: &str = "Smoke test: summarise in one line that the deployment answers.";

pub struct Smoke {
    pub base: String,
    /// A token with the `submitter` role (it reads its own task and events too).
    pub token: String,
    /// How long the task may take to settle.
    pub timeout: Duration,
    /// The exporter's `/metrics` (the metrics path's end): when given, the smoke task must show
    /// there, as one more `neuraforge_tasks_finished_total`, within `metrics_timeout`.
    pub metrics: Option<String>,
    /// Firehose buffers a minute before it delivers: three by default.
    pub metrics_timeout: Duration,
}

/// The sum of a counter's series in a Prometheus text exposition.
pub fn counter_sum(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn pass(what: &str) {
    println!("ok  {what}");
}

impl Smoke {
    pub async fn run(&self) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let base = self.base.trim_end_matches('/');
        let url = |path: &str| format!("{base}{path}");

        for path in ["/api/v1/health", "/api/v1/health/ready"] {
            let status = http.get(url(path)).send().await?.status();
            ensure!(status == 200, "GET {path} answered {status}");
            pass(&format!("GET {path}: 200"));
        }

        let anonymous = http
            .post(url("/api/v1/submit_task"))
            .json(&serde_json::json!({"prompt": PROMPT}))
            .send()
            .await?;
        let (status, kind) = (anonymous.status(), content_type(&anonymous));
        ensure!(
            status == 401 && kind.starts_with("application/problem+json"),
            "a submission without a token answered {status} ({kind}), not a 401 problem"
        );
        pass("POST /api/v1/submit_task without a token: 401 problem+json");

        let finished_before = match &self.metrics {
            Some(metrics) => Some(self.finished(&http, metrics).await?),
            None => None,
        };
        let submitted = http
            .post(url("/api/v1/submit_task"))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({"prompt": PROMPT, "metadata": {"smoke": "true"}}))
            .send()
            .await?;
        let status = submitted.status();
        let body: serde_json::Value = submitted.json().await.unwrap_or_default();
        ensure!(
            status == 200,
            "POST /api/v1/submit_task answered {status}: {body}"
        );
        let task_id = body["task_id"]
            .as_str()
            .ok_or_else(|| anyhow!("the submission's answer has no task_id: {body}"))?
            .to_string();
        pass(&format!("POST /api/v1/submit_task: task {task_id}"));

        let started = Instant::now();
        let settled = loop {
            let task = http
                .get(url(&format!("/api/v1/tasks/{task_id}")))
                .bearer_auth(&self.token)
                .send()
                .await?;
            let status = task.status();
            let body: serde_json::Value = task.json().await.unwrap_or_default();
            ensure!(status == 200, "GET the task answered {status}: {body}");
            let now = body["status"].as_str().unwrap_or_default().to_string();
            if SETTLED.contains(&now.as_str()) {
                break now;
            }
            if started.elapsed() > self.timeout {
                bail!("the task is still {now} after {:?}", self.timeout);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        ensure!(settled == "completed", "the smoke task ended {settled}");
        pass(&format!(
            "GET /api/v1/tasks/{{id}}: completed in {:.1} s",
            started.elapsed().as_secs_f64()
        ));

        // The settled task's stream replays every event and ends.
        let stream = http
            .get(url(&format!("/api/v1/tasks/{task_id}/events")))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let (status, kind) = (stream.status(), content_type(&stream));
        ensure!(
            status == 200 && kind.starts_with("text/event-stream"),
            "the event stream answered {status} ({kind})"
        );
        let text = stream.text().await.context("reading the event stream")?;
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event:"))
            .map(str::trim)
            .collect();
        ensure!(
            text.lines().any(|l| l.starts_with("id:")),
            "the event stream sent no ids"
        );
        ensure!(
            events.first() == Some(&"task_started") && events.contains(&"task_completed"),
            "the event stream sent {events:?}"
        );
        pass(&format!(
            "GET /api/v1/tasks/{{id}}/events: {} events, task_started to task_completed",
            events.len()
        ));

        if let (Some(metrics), Some(before)) = (&self.metrics, finished_before) {
            let waited = Instant::now();
            loop {
                let now = self.finished(&http, metrics).await?;
                if now > before {
                    pass(&format!(
                        "the exporter counts the task (neuraforge_tasks_finished_total {before} → {now}) after {:.0} s",
                        waited.elapsed().as_secs_f64()
                    ));
                    break;
                }
                if waited.elapsed() > self.metrics_timeout {
                    bail!(
                        "the exporter at {metrics} did not count the smoke task within {:?} (the metrics path: subscription filters, Firehose, the exporter)",
                        self.metrics_timeout
                    );
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        Ok(())
    }

    /// `neuraforge_tasks_finished_total`, summed over its series, at the exporter.
    async fn finished(&self, http: &reqwest::Client, metrics: &str) -> Result<f64> {
        let response = http.get(metrics).send().await?;
        let status = response.status();
        ensure!(status == 200, "GET {metrics} answered {status}");
        let text = response.text().await?;
        Ok(counter_sum(&text, "neuraforge_tasks_finished_total"))
    }
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::counter_sum;

    #[test]
    fn a_counter_is_summed_over_its_series_and_no_other_metric() {
        let text = "# TYPE neuraforge_tasks_finished_total counter\n\
            neuraforge_tasks_finished_total{status=\"completed\"} 3\n\
            neuraforge_tasks_finished_total{status=\"failed\"} 1\n\
            neuraforge_tasks_finished_total_extra 100\n";
        assert_eq!(counter_sum(text, "neuraforge_tasks_finished_total"), 4.0);
        assert_eq!(counter_sum("", "neuraforge_tasks_finished_total"), 0.0);
    }
}
