//! `nf-ops`: the operators' tool. Dead-letter queues (list, inspect, replay, purge,
//! redrive) and stuck tasks, with AWS credentials and the SDK's usual configuration
//! (profile, region, `AWS_ENDPOINT_URL` for the local stack), never a JWT. Every action
//! that changes something is written to the audit log under the caller's IAM identity.

mod dlq;
mod stack;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use dlq::{Action, Dlq, Filter, Replay};
use serde::Serialize;
use shared::tasks::{RunStore, RunTables, TaskId, TaskStore, TaskTables};
use stack::Stack;
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "nf-ops",
    version,
    about = "NeuraForge operations: dead-letter queues and stuck tasks"
)]
struct Cli {
    /// The stack's name: its queues and tables are named `<stack>-<LogicalId>…`.
    #[arg(long, env = "NF_STACK", global = true)]
    stack: Option<String>,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Dead-letter queues.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Tasks.
    #[command(subcommand)]
    Tasks(TasksCommand),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Every dead-letter queue of the stack: source queue, depth, oldest message, maxReceiveCount.
    List,
    /// The messages, without consuming them.
    Inspect {
        /// The dead-letter queue: its logical id (`TasksDeadLetterQueue`), name or URL.
        queue: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many messages.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Moves the selected messages back to their source queue, reopening their tasks.
    Replay {
        queue: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print what would move; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// At most this many messages a second.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
    },
    /// Deletes every message: only after the queue's name is typed (or given to --confirm).
    Purge {
        queue: String,
        #[arg(long)]
        confirm: Option<String>,
    },
    /// Moves every message back with SQS's own StartMessageMoveTask (AWS only; no filters).
    Redrive { queue: String },
}

#[derive(Subcommand)]
enum TasksCommand {
    /// Tasks `queued` or `in_progress` for longer than --older-than.
    Stuck {
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        older_than: Duration,
    },
}

#[derive(Args, Clone)]
struct FilterArgs {
    /// Only this task's message.
    #[arg(long)]
    task_id: Option<String>,
    /// Only messages whose task's failures contain this text.
    #[arg(long)]
    reason: Option<String>,
    /// Only messages older than this (`90s`, `10m`, `2h`, `1d`).
    #[arg(long, value_parser = parse_duration)]
    older_than: Option<Duration>,
}

impl FilterArgs {
    fn filter(&self) -> Result<Filter> {
        let task_id = match &self.task_id {
            Some(raw) => Some(
                TaskId::parse(raw).ok_or_else(|| anyhow!("--task-id {raw:?} is not a task id"))?,
            ),
            None => None,
        };
        Ok(Filter {
            task_id,
            reason: self.reason.clone(),
            older_than: self.older_than,
        })
    }
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?}: a number then s, m, h or d (90s, 10m, 2h, 1d)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{raw:?}: the unit is s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("nf-ops: {e:#}");
        std::process::exit(1);
    }
}

/// What the tool needs of the stack.
struct Ops {
    sdk: aws_config::SdkConfig,
    stack: Stack,
    output: Output,
}

async fn run(cli: Cli) -> Result<()> {
    let name = cli
        .stack
        .clone()
        .context("which stack? --stack NAME (or NF_STACK)")?;
    let sdk = shared::aws::load().await;
    let stack = Stack::discover(&sdk, &name).await?;
    let ops = Ops {
        sdk,
        stack,
        output: cli.output,
    };
    match cli.command {
        Command::Dlq(DlqCommand::List) => ops.list().await,
        Command::Dlq(DlqCommand::Inspect {
            queue,
            filter,
            limit,
        }) => {
            let dlq = ops.dlq(&queue)?;
            let letters = dlq.inspect(&filter.filter()?, limit).await?;
            ops.print(
                &letters,
                &[
                    "message",
                    "receives",
                    "age",
                    "task",
                    "status",
                    "attempts",
                    "first failure",
                    "last failure",
                ],
                |l| {
                    vec![
                        l.message_id.clone(),
                        l.receive_count.to_string(),
                        age(l.age_seconds),
                        l.task_id.clone().unwrap_or_default(),
                        l.task_status.clone().unwrap_or_default(),
                        l.attempts.map(|a| a.to_string()).unwrap_or_default(),
                        l.first_failure.clone().unwrap_or_default(),
                        l.last_failure.clone().unwrap_or_default(),
                    ]
                },
            )
        }
        Command::Dlq(DlqCommand::Replay {
            queue,
            filter,
            dry_run,
            max,
            rate,
        }) => {
            if !(rate > 0.0 && rate <= 1000.0) {
                bail!("--rate is messages a second, more than 0 and at most 1000");
            }
            ops.replay(&queue, filter.filter()?, dry_run, max, rate)
                .await
        }
        Command::Dlq(DlqCommand::Purge { queue, confirm }) => ops.purge(&queue, confirm).await,
        Command::Dlq(DlqCommand::Redrive { queue }) => ops.redrive(&queue).await,
        Command::Tasks(TasksCommand::Stuck { older_than }) => ops.stuck(older_than).await,
    }
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

impl Ops {
    fn dlq(&self, which: &str) -> Result<Dlq<'_>> {
        let queue = self.stack.dead_letter_queue(which)?;
        // Task messages are read with their tasks; the audit queue's records have none.
        let tasks = match queue.source_name.contains("-TasksQueue") {
            true => Some(self.tasks()?),
            false => None,
        };
        Ok(Dlq {
            sqs: aws_sdk_sqs::Client::new(&self.sdk),
            queue,
            tasks,
        })
    }

    fn tasks(&self) -> Result<TaskStore> {
        Ok(TaskStore::new(
            &self.sdk,
            TaskTables {
                tasks: self.stack.table("TasksTable")?,
                retention: Default::default(),
            },
        ))
    }

    fn runs(&self) -> Result<RunStore> {
        Ok(RunStore::new(
            &self.sdk,
            RunTables {
                events: self.stack.table("EventsTable")?,
                runs: self.stack.table("RunsTable")?,
                retention: Default::default(),
            },
        ))
    }

    /// Rows as a table, or the values as JSON.
    fn print<T: Serialize>(
        &self,
        rows: &[T],
        header: &[&str],
        cells: impl Fn(&T) -> Vec<String>,
    ) -> Result<()> {
        match self.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(rows)?),
            Output::Table => {
                let mut table = comfy_table::Table::new();
                table.load_preset(comfy_table::presets::ASCII_MARKDOWN);
                table.set_header(header.to_vec());
                for row in rows {
                    table.add_row(cells(row));
                }
                println!("{table}");
            }
        }
        Ok(())
    }

    async fn list(&self) -> Result<()> {
        #[derive(Serialize)]
        struct Row {
            queue: String,
            source: String,
            depth: u64,
            oldest_age_seconds: Option<u64>,
            max_receive_count: u32,
        }
        let mut rows = Vec::new();
        for queue in &self.stack.dead_letter_queues {
            let dlq = self.dlq(&queue.name)?;
            rows.push(Row {
                queue: queue.name.clone(),
                source: queue.source_name.clone(),
                depth: dlq.depth().await?,
                oldest_age_seconds: dlq.oldest_age_seconds().await?,
                max_receive_count: queue.max_receive_count,
            });
        }
        self.print(
            &rows,
            &["queue", "source", "depth", "oldest", "maxReceiveCount"],
            |r| {
                vec![
                    r.queue.clone(),
                    r.source.clone(),
                    r.depth.to_string(),
                    r.oldest_age_seconds.map(age).unwrap_or_else(|| "–".into()),
                    r.max_receive_count.to_string(),
                ]
            },
        )
    }

    async fn replay(
        &self,
        queue: &str,
        filter: Filter,
        dry_run: bool,
        max: usize,
        rate: f64,
    ) -> Result<()> {
        let dlq = self.dlq(queue)?;
        let operator = self.operator().await?;
        let runs = self.runs()?;
        let progress = indicatif::ProgressBar::new(dlq.depth().await?.min(max as u64));
        let plan = Replay {
            filter,
            dry_run,
            max,
            rate,
            runs: &runs,
            operator: &operator,
        };
        let done = dlq.replay(&plan, &progress).await?;
        progress.finish_and_clear();
        for moved in done.iter().filter(|d| d.action == Action::Moved) {
            let target = moved
                .task_id
                .clone()
                .unwrap_or_else(|| moved.message_id.clone());
            self.audit(&operator, "dlq replay", &target).await?;
        }
        self.print(&done, &["message", "task", "found", "action"], |d| {
            vec![
                d.message_id.clone(),
                d.task_id.clone().unwrap_or_default(),
                serde_json::to_value(&d.readiness)
                    .ok()
                    .map(|v| match v["status"].as_str() {
                        Some(status) => {
                            format!("{} ({status})", v["state"].as_str().unwrap_or_default())
                        }
                        None => v["state"].as_str().unwrap_or_default().to_string(),
                    })
                    .unwrap_or_default(),
                serde_json::to_value(d.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            ]
        })?;
        if done.iter().any(|d| d.action == Action::Failed) {
            bail!("some messages were not sent; they stay in the dead-letter queue");
        }
        Ok(())
    }

    async fn purge(&self, queue: &str, confirm: Option<String>) -> Result<()> {
        let dlq = self.dlq(queue)?;
        let name = dlq.queue.name.clone();
        let typed = match confirm {
            Some(typed) => typed,
            None if std::io::stdin().is_terminal() => {
                eprint!(
                    "This deletes all {} messages of {name}. Type the queue's name to go on: ",
                    dlq.depth().await?
                );
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim().to_string()
            }
            None => bail!("refusing to purge {name} without --confirm {name}"),
        };
        if typed != name {
            bail!("refusing to purge: {typed:?} is not {name:?}");
        }
        let operator = self.operator().await?;
        dlq.purge().await?;
        self.audit(&operator, "dlq purge", &name).await?;
        println!("purged {name}");
        Ok(())
    }

    async fn redrive(&self, queue: &str) -> Result<()> {
        let dlq = self.dlq(queue)?;
        let operator = self.operator().await?;
        let started = aws_sdk_sqs::Client::new(&self.sdk)
            .start_message_move_task()
            .source_arn(&dlq.queue.arn)
            .destination_arn(&dlq.queue.source_arn)
            .send()
            .await;
        match started {
            Ok(task) => {
                self.audit(&operator, "dlq redrive", &dlq.queue.name)
                    .await?;
                println!(
                    "moving every message of {} to {} (task {}); tasks already failed as \
                     dead-lettered are not reopened: their messages are dropped as duplicates \
                     (use `nf-ops dlq replay` for those)",
                    dlq.queue.name,
                    dlq.queue.source_name,
                    task.task_handle().unwrap_or_default()
                );
                Ok(())
            }
            Err(e) => bail!(
                "StartMessageMoveTask failed ({}): this endpoint may not support it (moto does \
                 not); use `nf-ops dlq replay {queue}`, which also reopens the tasks",
                shared::aws::describe_error(&e)
            ),
        }
    }

    async fn stuck(&self, older_than: Duration) -> Result<()> {
        let store = self.tasks()?;
        let runs = self.runs()?;
        let cutoff = shared::time::now_millis() - older_than.as_millis() as i64;
        let mut rows = Vec::new();
        for task in store.unsettled_since(cutoff).await? {
            let last_event = runs
                .events_after(task.task_id, 0, 10_000, shared::tasks::Read::Recent)
                .await?
                .last()
                .map(|e| e.event.clone());
            rows.push(serde_json::json!({
                "task_id": task.task_id.to_string(),
                "status": task.status.as_str(),
                "age_seconds": (shared::time::now_millis() - task.created_at).max(0) / 1000,
                "attempts": task.attempts,
                "last_event": last_event,
                "last_failure": task.failures.last().map(|f| f.message.clone()).or(task.last_error.clone()),
            }));
        }
        self.print(
            &rows,
            &[
                "task",
                "status",
                "age",
                "attempts",
                "last event",
                "last failure",
            ],
            |r| {
                let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                vec![
                    text("task_id"),
                    text("status"),
                    age(r["age_seconds"].as_u64().unwrap_or_default()),
                    r["attempts"].to_string(),
                    text("last_event"),
                    text("last_failure"),
                ]
            },
        )
    }

    /// The caller's IAM identity (STS `GetCallerIdentity`).
    async fn operator(&self) -> Result<String> {
        let me = aws_sdk_sts::Client::new(&self.sdk)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "who am I (sts:GetCallerIdentity): {}",
                    shared::aws::describe_error(&e)
                )
            })?;
        me.arn()
            .map(str::to_string)
            .context("sts:GetCallerIdentity named no ARN")
    }

    /// One audit record for a change an operator made: its own object in the audit
    /// bucket, sealed with the functions' records.
    async fn audit(&self, operator: &str, action: &str, target: &str) -> Result<()> {
        use sha2::Digest;
        let store =
            shared::audit::store::AuditStore::new(&self.sdk, self.stack.bucket("AuditBucket")?);
        let args: Vec<String> = std::env::args().collect();
        let record = shared::audit::AuditRecord {
            time: shared::time::now_millis(),
            request_id: uuid::Uuid::new_v4().to_string(),
            principal: operator.to_string(),
            roles: vec!["operator".into()],
            function: "nf-ops".into(),
            route: action.into(),
            method: "CLI".into(),
            target: Some(target.to_string()),
            body_sha256: hex::encode(sha2::Sha256::digest(args.join(" ").as_bytes())),
            status: 200,
            source_ip: None,
            user_agent: Some(format!("nf-ops/{}", env!("CARGO_PKG_VERSION"))),
            override_of: None,
        };
        let line = shared::audit::line_of(&record);
        store
            .put_records("nf-ops", &[line], record.time)
            .await
            .map(|_| ())
            .map_err(|e| anyhow!("{e}"))
    }
}
