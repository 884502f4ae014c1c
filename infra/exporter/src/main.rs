//! `emf-exporter`: EMF documents in (stdin, a followed file, Firehose), Prometheus metrics out.
use clap::Parser;
use emf_exporter::config::Config;
use emf_exporter::registry::Registry;
use emf_exporter::server::{self, Limits, Role, Shared};
use emf_exporter::sources;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "Serves CloudWatch Embedded Metric Format documents as Prometheus metrics"
)]
struct Cli {
    /// The metrics catalogue and limits (infra/exporter/exporter.yaml).
    #[arg(long, default_value = "infra/exporter/exporter.yaml")]
    config: PathBuf,
    /// Address to serve on: /firehose when the Firehose endpoint is enabled (then
    /// /metrics is served only on --metrics-listen), else /metrics.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: String,
    /// Address to serve /metrics on, apart from the public Firehose endpoint
    /// (required with --firehose-access-key-file).
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Firehose deliveries read or applied at once; more are answered 503 (Firehose retries).
    #[arg(long, default_value_t = 4)]
    max_deliveries: usize,
    /// Seconds a delivery's body may take to arrive.
    #[arg(long, default_value_t = 30)]
    body_timeout_seconds: u64,
    /// Read EMF lines from standard input.
    #[arg(long)]
    stdin: bool,
    /// Follow this log file (as tail -F) for EMF lines.
    #[arg(long)]
    follow: Option<PathBuf>,
    /// With --follow: read what the file already holds first.
    #[arg(long)]
    from_start: bool,
    /// File holding the Firehose access key; enables POST /firehose.
    #[arg(long, env = "EXPORTER_FIREHOSE_ACCESS_KEY_FILE")]
    firehose_access_key_file: Option<PathBuf>,
    /// The Firehose access key itself, from the environment only (ECS injects it from Secrets
    /// Manager); enables POST /firehose. Never a command-line argument: those are visible.
    #[arg(skip = std::env::var("EXPORTER_FIREHOSE_ACCESS_KEY").ok())]
    firehose_access_key: Option<String>,
    /// PEM certificate chain: serve HTTPS (Firehose only delivers to HTTPS endpoints).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn fail(message: impl std::fmt::Display) -> ! {
    eprintln!("emf-exporter: {message}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = Config::load(&cli.config).unwrap_or_else(|e| fail(e));
    let from_file = cli.firehose_access_key_file.as_ref().map(|path| {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| fail(format!("cannot read {}: {e}", path.display())))
    });
    let firehose_key = from_file.or(cli.firehose_access_key.clone()).map(|key| {
        let key = key.trim().to_string();
        if key.len() < 16 {
            fail("the Firehose access key must be at least 16 characters");
        }
        key
    });
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => {
            Some(server::tls_acceptor(cert, key).unwrap_or_else(|e| fail(e)))
        }
        _ => None,
    };
    if firehose_key.is_some() && cli.metrics_listen.is_none() {
        fail(
            "--metrics-listen is required with the Firehose endpoint: /metrics must not be served on its public listener",
        );
    }
    let registry = Arc::new(Mutex::new(Registry::new(config)));
    let bind = |address: String| async move {
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .unwrap_or_else(|e| fail(format!("cannot listen on {address}: {e}")));
        let bound = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        (listener, bound)
    };
    let (listener, address) = bind(cli.listen.clone()).await;
    let metrics_listener = match cli.metrics_listen.clone() {
        Some(address) => Some(bind(address).await),
        None => None,
    };
    let role = if metrics_listener.is_some() {
        Role::Firehose
    } else {
        Role::Both
    };
    tracing::info!(%address, tls = tls.is_some(), firehose = firehose_key.is_some(), ?role, "serving");
    // The bound addresses on stdout's first lines, so a caller that asked for port 0 can find them.
    println!("listening on {address}");
    if let Some((_, metrics_address)) = &metrics_listener {
        println!("metrics on {metrics_address}");
    }

    if cli.stdin {
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            if let Err(e) = sources::stdin(registry).await {
                tracing::warn!(error = %e, "standard input failed");
            }
            tracing::info!("standard input closed; still serving");
        });
    }
    if let Some(path) = cli.follow.clone() {
        let registry = Arc::clone(&registry);
        let from_start = cli.from_start;
        tokio::spawn(async move {
            let _ = sources::follow(registry, path, from_start, Duration::from_millis(200)).await;
        });
    }
    let limits = Limits {
        deliveries: cli.max_deliveries.max(1),
        body_timeout: Duration::from_secs(cli.body_timeout_seconds.max(1)),
        ..Limits::default()
    };
    let shared = Arc::new(Shared {
        registry,
        recent: Mutex::new(Default::default()),
        firehose_key,
        limits,
        deliveries: tokio::sync::Semaphore::new(limits.deliveries),
    });
    let metrics = async {
        match metrics_listener {
            // The internal listener: plain HTTP, /metrics and /-/healthy only.
            Some((listener, _)) => {
                server::serve(listener, Arc::clone(&shared), Role::Metrics, None).await
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server::serve(listener, Arc::clone(&shared), role, tls) => {
            if let Err(e) = result { fail(e) }
        }
        result = metrics => {
            if let Err(e) = result { fail(e) }
        }
        _ = tokio::signal::ctrl_c() => {}
    }
}
