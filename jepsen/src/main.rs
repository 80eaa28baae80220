//! `gregor-jepsen`: run a fault-injection test against a three-node Gregor cluster, or check a
//! recorded history.
//!
//!   gregor-jepsen run --time-limit 300 --nemesis all
//!   gregor-jepsen check store/latest/history.jsonl

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gregor_jepsen::{nemesis, report, runner};

#[derive(Parser)]
#[command(about = "Jepsen-style fault-injection tests for Gregor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster, run a workload under faults, check the history.
    Run(RunArgs),
    /// Check a recorded history (history.jsonl) with the Rust checkers and porcupine.
    Check {
        history: PathBuf,
        /// The porcupine-check binary (built from jepsen/porcupine when absent and Go exists).
        #[arg(long)]
        porcupine: Option<PathBuf>,
        #[arg(long)]
        no_porcupine: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Names the run directory under --store.
    #[arg(long, default_value = "gregor")]
    name: String,
    #[arg(long, default_value = "store")]
    store: PathBuf,
    /// The gregor binary.
    #[arg(long, default_value = "target/checked/gregor")]
    gregor: PathBuf,
    /// Seconds of workload.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Operations per second, all processes together.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Client processes per workload.
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// Faults: none, all, kill, pause, partition, or names: kill-one, kill-leader, kill-all,
    /// pause-one, pause-leader, partition-one, partition-leader, partition-ring (comma list).
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seconds from a fault to its heal, and from a heal to the next fault.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// queue, metadata, or both.
    #[arg(long, default_value = "both")]
    workload: String,
    /// Queue consumers poll through a consumer group (subscribe, commit after each poll)
    /// instead of assigning partitions themselves.
    #[arg(long)]
    subscribe: bool,
    /// Partitions of the queue topic.
    #[arg(long, default_value_t = 4)]
    keys: i32,
    /// Registers of the metadata workload.
    #[arg(long, default_value_t = 3)]
    registers: usize,
    /// Producer acks: all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Turn the idempotent producer off (it needs acks=all).
    #[arg(long)]
    no_idempotence: bool,
    #[arg(long, default_value_t = 2)]
    min_insync_replicas: i32,
    /// unclean.leader.election.enable for the queue topic and the brokers.
    #[arg(long)]
    unclean_leader_election: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the porcupine cross-check.
    #[arg(long)]
    no_porcupine: bool,
    /// Nodes listen on SUBNET.11, .12 and .13 (a /24 of 127/8, so that concurrent runs on
    /// different subnets keep out of each other's way).
    #[arg(long, default_value = "127.0.0")]
    subnet: String,
    #[arg(long, default_value_t = 19092)]
    broker_port: u16,
    #[arg(long, default_value_t = 19192)]
    controller_port: u16,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JEPSEN_LOG")
                .unwrap_or_else(|_| "info,rdkafka=off,librdkafka=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("gregor-jepsen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Run(a) => {
            let idempotence = !a.no_idempotence && a.acks == "all";
            let (queue, metadata) = match a.workload.as_str() {
                "queue" => (true, false),
                "metadata" => (false, true),
                "both" => (true, true),
                other => anyhow::bail!("unknown workload {other:?}"),
            };
            let porcupine = if a.no_porcupine {
                None
            } else {
                runner::build_porcupine(&a.store.join("bin"))?
            };
            let opts = runner::RunOptions {
                name: a.name,
                store: a.store,
                gregor: a.gregor,
                porcupine,
                time_limit: Duration::from_secs(a.time_limit),
                rate: a.rate,
                concurrency: a.concurrency,
                faults: nemesis::parse_faults(&a.nemesis)?,
                interval: Duration::from_secs(a.interval),
                queue,
                consume: if a.subscribe {
                    runner::ConsumeMode::Subscribe
                } else {
                    runner::ConsumeMode::Assign
                },
                metadata,
                keys: a.keys,
                registers: a.registers,
                acks: a.acks,
                idempotence,
                min_insync_replicas: a.min_insync_replicas,
                unclean_leader_election: a.unclean_leader_election,
                seed: a.seed,
                subnet: a.subnet,
                broker_port: a.broker_port,
                controller_port: a.controller_port,
            };
            let outcome = runner::run(&opts)?;
            println!("{}", outcome.summary);
            Ok(outcome.valid)
        }
        Command::Check {
            history,
            porcupine,
            no_porcupine,
        } => {
            let dir = history
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_else(|| PathBuf::from("."));
            let porcupine = match (no_porcupine, porcupine) {
                (true, _) => None,
                (false, Some(p)) => Some(p),
                (false, None) => runner::build_porcupine(&std::env::temp_dir())?,
            };
            let verdict = report::check_history_file(&history, &dir, porcupine.as_deref())?;
            println!("{}", verdict.summary);
            Ok(verdict.valid)
        }
    }
}
