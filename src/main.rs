//! The `gregor` binary: `gregor [--config FILE | FILE] [--override key=value ...]`.

use std::path::PathBuf;

use gregor::broker::Broker;
use gregor::config::BrokerConfig;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: gregor [--config FILE | FILE] [--override key=value]...";

fn parse_args() -> Result<(Option<PathBuf>, Vec<(String, String)>), String> {
    let mut file = None;
    let mut overrides = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                file = Some(PathBuf::from(args.next().ok_or("--config needs a file")?))
            }
            "--override" => {
                let kv = args.next().ok_or("--override needs key=value")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--override {kv}: expected key=value"))?;
                overrides.push((k.trim().to_string(), v.trim().to_string()));
            }
            "--help" | "-h" => return Err(USAGE.to_string()),
            other if !other.starts_with('-') && file.is_none() => file = Some(PathBuf::from(other)),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok((file, overrides))
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GREGOR_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let (file, overrides) = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            tracing::error!("{msg}");
            std::process::exit(2);
        }
    };
    let config = match BrokerConfig::load(file.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "bad configuration");
            std::process::exit(2);
        }
    };
    let open_files_limit = raise_open_files_limit();
    let segment_files = config
        .prop("log.segment.open.files.max")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or_else(|| default_open_segment_files(open_files_limit));
    gregor_storage::open_files::set_capacity(segment_files);
    tracing::info!(
        segment_files = gregor_storage::open_files::capacity(),
        "segment files kept open at most (log.segment.open.files.max)"
    );
    let threads = config
        .prop("num.io.threads")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2usize)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(async move {
        let broker = match Broker::open(config).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "start-up failed");
                return 1;
            }
        };
        if let Err(e) = broker.start_serving().await {
            tracing::error!(error = %e, "start-up failed");
            return 1;
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        broker.shutdown().await;
        0
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}

/// Raises the soft limit on open files to the hard limit and returns it. Segment files are
/// the bulk of a node's descriptors, and a node with many partitions passes the usual soft
/// limit of 1024 long before the hard one.
fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(limit, "open files limit (RLIMIT_NOFILE)");
            limit
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open files limit");
            1024
        }
    }
}

/// Three quarters of the descriptors for segment files; the rest is for connections, the
/// metadata log's RocksDB files and index writes.
fn default_open_segment_files(open_files_limit: u64) -> usize {
    usize::try_from(open_files_limit / 4 * 3).unwrap_or(usize::MAX)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
