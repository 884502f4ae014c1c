//! `devstack`: the local stack's command-line tool. See `infra/dev` for how it is used.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use devstack::sources::{Invoker, run_all};
use devstack::{LocalStack, Template, provision};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "devstack", about = "NeuraForge local stack tooling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the template's tables and queues in the emulator (AWS_ENDPOINT_URL) and
    /// write the stack description and the functions' environment file.
    Provision {
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
        #[arg(long, default_value = "neuraforge-local")]
        stack_name: String,
        /// Where to write the stack description (JSON).
        #[arg(long, default_value = ".local/stack.json")]
        out: PathBuf,
        /// Where to write KEY=VALUE lines for `cargo lambda watch --env-file`.
        #[arg(long, default_value = ".local/functions.env")]
        env_out: PathBuf,
        /// KEY=VALUE lines for the variables the template takes from secrets.
        #[arg(long, default_value = ".local/secrets.env")]
        secrets: PathBuf,
    },
    /// Run the SQS event source mappings and schedules of the stack until Ctrl-C.
    EventSources {
        #[arg(long, default_value = ".local/stack.json")]
        stack: PathBuf,
        /// Base URL of the Lambda Invoke API (`cargo lambda watch`).
        #[arg(long, default_value = "http://127.0.0.1:9000")]
        invoke_url: String,
        /// Run scheduled functions this often instead of their template schedule.
        #[arg(long)]
        schedule_seconds: Option<u64>,
        /// The functions' output to ship audit lines from into the audit bucket (what
        /// the log subscription and Firehose do in AWS).
        #[arg(long)]
        audit_lines: Option<PathBuf>,
    },
    /// Verify the audit log against its signed digests and the anchor; names the first
    /// altered, deleted or inserted record or digest and exits 1 if there is one.
    AuditVerify {
        /// The audit bucket (default: the local stack's; in AWS the stack's AuditBucketName
        /// output).
        #[arg(long)]
        bucket: Option<String>,
        /// The SSM SecureString with the signing key (default: the sealer's setting).
        #[arg(long)]
        key_parameter: Option<String>,
        /// The SSM parameter with the anchor (default: the sealer's setting).
        #[arg(long)]
        anchor_parameter: Option<String>,
        /// How long the bucket keeps the log (`AuditRetentionDays`; default: the sealer's
        /// setting, else 400): older history may have expired.
        #[arg(long)]
        retention_days: Option<u64>,
        #[arg(long, default_value = ".local/stack.json")]
        stack: PathBuf,
    },
    /// Print a signed dev token for the given subject and roles.
    Token {
        #[arg(long, default_value = "dev-user")]
        sub: String,
        /// Comma-separated: submitter, observer, reviewer, review_admin.
        #[arg(long, default_value = "submitter")]
        roles: String,
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: u64,
        #[arg(long, default_value = ".local/secrets.env")]
        secrets: PathBuf,
        /// The `iss` claim (a deployed stack requires its JwtIssuer).
        #[arg(long)]
        issuer: Option<String>,
        /// The `aud` claim (a deployed stack requires its JwtAudience).
        #[arg(long)]
        audience: Option<String>,
        /// Sign with the secret in this SSM SecureString (a deployed stack's
        /// JwtSecretParameter, read with the caller's AWS credentials) instead of the file.
        #[arg(long)]
        secret_parameter: Option<String>,
    },
    /// Write the OpenAPI description the code generates (`docs/openapi.yaml`), or with
    /// `--check` fail when the file differs from it.
    Openapi {
        #[arg(long, default_value = "docs/openapi.yaml")]
        out: PathBuf,
        #[arg(long)]
        check: bool,
    },
    /// The post-deploy smoke: health, readiness, a refusal without a token, a submission run to
    /// completion, its status and its event stream. One line per check; exits 1 on a failure.
    Smoke {
        /// The API's base URL (the stack's ApiUrl output, or the local stack's).
        #[arg(long, default_value = "http://127.0.0.1:9000")]
        base: String,
        /// How long the smoke task may take, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout_seconds: u64,
        /// The exporter's /metrics URL: check that the smoke task reaches it (the metrics path).
        #[arg(long)]
        metrics_url: Option<String>,
        /// How long the task's series may take to reach the exporter, in seconds.
        #[arg(long, default_value_t = 180)]
        metrics_timeout_seconds: u64,
    },
}

/// Reads KEY=VALUE lines (blank lines and `#` comments skipped).
fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Provision {
            template,
            stack_name,
            out,
            env_out,
            secrets,
        } => {
            if std::env::var("AWS_ENDPOINT_URL").is_err() {
                bail!("AWS_ENDPOINT_URL is not set: devstack provisions the local emulator only");
            }
            let sdk = shared::aws::load().await;
            let stack = provision(&sdk, &Template::load(&template)?, &stack_name).await?;
            let secret_values = read_env_file(&secrets)?;
            let mut env = stack.merged_environment();
            for name in stack.secret_variables() {
                let value = secret_values.get(&name).ok_or_else(|| {
                    anyhow!(
                        "{name} comes from a secret in the template: set it in {}",
                        secrets.display()
                    )
                })?;
                env.insert(name, value.clone());
            }
            // The functions read the signing secret from SSM, as in AWS.
            if let Some(parameter) = env.get(shared::auth::SECRET_PARAMETER_SETTING) {
                let secret = secret_values.get("AUTH__JWT_SECRET_KEY").ok_or_else(|| {
                    anyhow!("AUTH__JWT_SECRET_KEY is not in {}", secrets.display())
                })?;
                devstack::provision::store_signing_secret(&sdk, parameter, secret).await?;
            }
            // The audit sealer's signing key, likewise (a local default if the file has none).
            if let Some(parameter) = env.get(shared::audit::seal::KEY_SETTING) {
                let key = secret_values
                    .get("AUDIT__SIGNING_KEY")
                    .map_or("neuraforge-local-audit-signing-key-0001", String::as_str);
                devstack::provision::store_signing_secret(&sdk, parameter, key).await?;
            }
            for name in [
                "AWS_ENDPOINT_URL",
                "AWS_REGION",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
            ] {
                if let Ok(value) = std::env::var(name) {
                    env.insert(name.to_string(), value);
                }
            }
            let env_text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            write_file(&env_out, &env_text)?;
            write_file(&out, &serde_json::to_string_pretty(&stack)?)?;
            println!(
                "provisioned {} tables and {} queues for {} functions",
                stack.tables.len(),
                stack.queues.len(),
                stack.functions.len()
            );
            Ok(())
        }
        Command::EventSources {
            stack,
            invoke_url,
            schedule_seconds,
            audit_lines,
        } => {
            let text = std::fs::read_to_string(&stack)
                .with_context(|| format!("reading {}", stack.display()))?;
            let stack: LocalStack = serde_json::from_str(&text)?;
            let sdk = shared::aws::load().await;
            // Longer than any function timeout: the worker may run up to 60 s.
            let invoker = Invoker::new(invoke_url, Duration::from_secs(900));
            if let (Some(path), Some(bucket)) = (audit_lines, stack.buckets.get("AuditBucket")) {
                let store = shared::audit::store::AuditStore::new(&sdk, bucket);
                let every = Duration::from_secs(2);
                tokio::spawn(devstack::audit_shipper::ship(store, path, every));
            }
            run_all(
                &sdk,
                &stack,
                invoker,
                schedule_seconds.map(Duration::from_secs),
            )
            .await
        }
        Command::AuditVerify {
            bucket,
            key_parameter,
            anchor_parameter,
            retention_days,
            stack,
        } => {
            use shared::audit::seal::{ANCHOR_SETTING, KEY_SETTING};
            use shared::audit::store::BUCKET_SETTING;
            // What the options leave out comes from the local stack's sealer.
            let sealer = || -> Result<BTreeMap<String, String>> {
                let text = std::fs::read_to_string(&stack)
                    .with_context(|| format!("reading {}", stack.display()))?;
                let stack: LocalStack = serde_json::from_str(&text)?;
                Ok(stack.function("audit-sealer")?.environment.clone())
            };
            let setting = |given: Option<String>, name: &str| -> Result<String> {
                match given {
                    Some(v) => Ok(v),
                    None => sealer()?
                        .get(name)
                        .cloned()
                        .ok_or_else(|| anyhow!("the sealer has no {name}")),
                }
            };
            let bucket = setting(bucket, BUCKET_SETTING)?;
            let key_parameter = setting(key_parameter, KEY_SETTING)?;
            let anchor_parameter = setting(anchor_parameter, ANCHOR_SETTING)?;
            let retention = match retention_days {
                Some(days) => Duration::from_secs(days * 86_400),
                None => {
                    let env = sealer().unwrap_or_default();
                    let settings = shared::config::Settings::new(move |n| env.get(n).cloned());
                    shared::audit::seal::retention(&settings)?
                }
            };
            let horizon = shared::audit::seal::horizon(retention, shared::time::now_millis());
            let sdk = shared::aws::load().await;
            let key = shared::aws::secure_parameter(&sdk, KEY_SETTING, &key_parameter).await?;
            let anchor = shared::audit::seal::read_anchor(
                &aws_sdk_ssm::Client::new(&sdk),
                &anchor_parameter,
            )
            .await?;
            let store = shared::audit::store::AuditStore::new(&sdk, bucket);
            match shared::audit::verify::verify_all(
                &store,
                key.as_bytes(),
                anchor.as_ref(),
                Some(horizon),
            )
            .await?
            {
                Ok(r) => {
                    println!(
                        "{} digest(s), {} sealed record(s), {} not sealed yet: intact",
                        r.digests, r.sealed, r.unsealed
                    );
                    Ok(())
                }
                Err(problem) => {
                    println!("BROKEN {problem}");
                    bail!("the audit log is broken")
                }
            }
        }
        Command::Token {
            sub,
            roles,
            ttl_seconds,
            secrets,
            issuer,
            audience,
            secret_parameter,
        } => {
            let secret = match (secret_parameter, std::env::var("AUTH__JWT_SECRET_KEY")) {
                (Some(name), _) => {
                    let sdk = shared::aws::load().await;
                    shared::aws::secure_parameter(&sdk, "--secret-parameter", &name).await?
                }
                (None, Ok(s)) => s,
                (None, Err(_)) => read_env_file(&secrets)?
                    .remove("AUTH__JWT_SECRET_KEY")
                    .ok_or_else(|| {
                        anyhow!("AUTH__JWT_SECRET_KEY is not in {}", secrets.display())
                    })?,
            };
            let roles: Vec<&str> = roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .collect();
            for role in &roles {
                if shared::auth::role_scopes(role).is_empty() {
                    bail!(
                        "unknown role {role:?}: use submitter, observer, reviewer or review_admin"
                    );
                }
            }
            println!(
                "{}",
                shared::auth::mint_token_for(
                    secret.as_bytes(),
                    &sub,
                    &roles,
                    ttl_seconds,
                    issuer.as_deref(),
                    audience.as_deref(),
                )?
            );
            Ok(())
        }
        Command::Openapi { out, check } => {
            let yaml = devstack::openapi_yaml()?;
            if check {
                let committed = std::fs::read_to_string(&out)
                    .with_context(|| format!("reading {}", out.display()))?;
                if committed != yaml {
                    bail!(
                        "{} is not what the code describes: run devstack openapi",
                        out.display()
                    );
                }
            } else {
                write_file(&out, &yaml)?;
            }
            Ok(())
        }
        Command::Smoke {
            base,
            timeout_seconds,
            metrics_url,
            metrics_timeout_seconds,
        } => {
            let token = std::env::var("SMOKE_TOKEN").map_err(|_| {
                anyhow!(
                    "SMOKE_TOKEN is not set: a submitter's token (devstack token --roles submitter)"
                )
            })?;
            let smoke = devstack::smoke::Smoke {
                base,
                token,
                timeout: std::time::Duration::from_secs(timeout_seconds),
                metrics: metrics_url,
                metrics_timeout: std::time::Duration::from_secs(metrics_timeout_seconds),
            };
            // A failed check is the smoke's answer (1), not a usage error (2).
            if let Err(failed) = smoke.run().await {
                eprintln!("devstack smoke: {failed:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    shared::telemetry::init_logging();
    if let Err(err) = run(Cli::parse()).await {
        eprintln!("devstack: {err:#}");
        std::process::exit(2);
    }
}
