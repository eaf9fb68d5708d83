use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use minicrm::{
    db::localdb,
    db::{migrate, seed::SeedArgs},
    http::serve::ServeSettings,
    ops::config::{Config, LogFormat},
    state::App,
};
use tracing_subscriber::EnvFilter;

/// A multi-tenant CRM whose rules live in PostgreSQL: the HTTP server and
/// its maintenance commands.
#[derive(Parser)]
#[command(
    version,
    after_help = "Configuration is read from the environment (DATABASE_URL, JWT_SECRET, \
                  LISTEN_ADDR, CORS_ALLOWED_ORIGINS, ...); see README.md, \"Configuration\". \
                  Without DATABASE_URL a local PostgreSQL cluster is started under .data/."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve HTTP (the default)
    Serve,
    /// Apply pending migrations and exit
    Migrate,
    /// Migrate, then add demo organizations with users of every role, contacts,
    /// deals, tasks and timelines (every password: demo-password)
    Seed(SeedArgs),
    /// Print the OpenAPI document (no database needed)
    Openapi,
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal, not in log files.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Argon2id allocates 19 MiB per hash. glibc's malloc raises its mmap
/// threshold once such a block is freed, and from then on keeps those blocks
/// in its per-thread heaps (hundreds of MB under a login load). A fixed
/// threshold hands every hash's memory back to the system when it is freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_allocations() {
    // SAFETY: mallopt only sets an allocator parameter; it takes no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations() {}

#[tokio::main]
async fn main() -> ExitCode {
    return_large_allocations();
    // Bad arguments exit 2 with usage; --help and --version exit 0.
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Openapi = command {
        println!(
            "{}",
            minicrm::http::openapi()
                .to_pretty_json()
                .unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("minicrm: {e:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let result = match command {
        Command::Serve => serve(config).await,
        Command::Migrate => database(&config).await.map(|_| ()),
        Command::Seed(seed) => match database(&config).await {
            Ok((url, _)) => minicrm::db::seed::run(&url, seed).await,
            Err(e) => Err(e),
        },
        Command::Openapi => unreachable!("handled before the configuration is read"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The database to use (the local cluster when DATABASE_URL is unset), migrated.
/// Returns its URL and the JWT secret.
async fn database(config: &Config) -> anyhow::Result<(String, String)> {
    let (url, secret) = match (&config.database_url, &config.jwt_secret) {
        (Some(url), Some(secret)) => (url.clone(), secret.clone()),
        _ => {
            let local = localdb::ensure(&config.data_dir, config.local_pg_port).await?;
            let secret = config.jwt_secret.clone().unwrap_or(local.jwt_secret);
            (local.database_url, secret)
        }
    };
    migrate::run(&url).await.context("migrating")?;
    tracing::info!("migrations applied");
    Ok((url, secret))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let (url, secret) = database(&config).await?;
    let listen = config.listen_addr;
    let settings = ServeSettings {
        header_read_timeout: config.http_header_read_timeout,
        max_connections: config.http_max_connections,
    };
    let maintenance_interval = config.maintenance_interval;
    let trash_retention_days = config.trash_retention_days;
    let event_retention_days = config.event_retention_days;
    let state = App::new(config, &url, &secret)?;
    let (stop_workers, workers) = tokio::sync::watch::channel(false);
    let maintenance = minicrm::workers::maintenance::spawn(
        state.db.clone(),
        maintenance_interval,
        trash_retention_days,
        event_retention_days,
        workers.clone(),
    );
    // Webhook deliveries, when WEBHOOK_SECRETS_KEY is set (README, "Webhooks").
    let webhooks = state.webhooks.clone().map(|hooks| {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let listening =
            minicrm::workers::webhooks::listen(&state.listener, wake.clone(), workers.clone());
        let delivering =
            minicrm::workers::webhooks::spawn(state.db.clone(), hooks, wake, workers.clone());
        (listening, delivering)
    });
    if webhooks.is_none() {
        tracing::info!("webhooks are off: WEBHOOK_SECRETS_KEY is not set");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(
        "listening on http://{}  (API docs: http://{}/docs)",
        listener.local_addr()?,
        listener.local_addr()?
    );
    // Live streams never end by themselves: end them when the server stops,
    // or draining would wait for their clients.
    let streams = state.streams.clone();
    let stopping = async move {
        shutdown_signal().await;
        streams.close_all();
    };
    let served =
        minicrm::http::serve::serve(listener, minicrm::app(state), settings, stopping).await;
    let _ = stop_workers.send(true);
    let _ = maintenance.await;
    if let Some((listening, delivering)) = webhooks {
        let _ = delivering.await;
        let _ = listening.await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
