//! Short runs of the jepsen/ harness (see docs/jepsen.md), checked by the Rust checkers and,
//! where Go is installed, by porcupine: the safe configuration passes under every kind of
//! fault, and an unsafe one is caught losing acknowledged writes. The long runs are
//! `make jepsen`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use gregor_jepsen::nemesis::parse_faults;
use gregor_jepsen::runner::{build_porcupine, run, RunOptions};

/// The two runs share the machine's two cores: one at a time.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Each run has its own /24, outside the 127.0.1-250 that the harness's clusters use and
/// the 127.0.0 of `make jepsen`.
fn options(name: &str, nemesis: &str, subnet: &str) -> RunOptions {
    let store = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jepsen-runs");
    let mut opts = RunOptions::safe(PathBuf::from(env!("CARGO_BIN_EXE_gregor")), store.clone());
    opts.name = name.into();
    opts.time_limit = Duration::from_secs(40);
    opts.interval = Duration::from_secs(4);
    opts.rate = 60.0;
    opts.concurrency = 3;
    opts.keys = 2;
    opts.registers = 2;
    opts.faults = parse_faults(nemesis).unwrap();
    opts.seed = 1;
    opts.subnet = subnet.into();
    opts.porcupine = build_porcupine(&store.join("bin")).expect("building porcupine-check");
    opts
}

#[test]
fn safe_configuration_survives_every_fault() {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let opts = options("smoke", "all", "127.0.251");
    let outcome = run(&opts).expect("the run completes");
    assert!(
        outcome.valid,
        "the safe configuration must pass; report in {}:\n{}",
        outcome.dir.display(),
        outcome.summary
    );
    // The run really exercised the cluster: faults were injected and every key read back.
    assert!(
        outcome.summary.contains("final reads: 2 of 2 keys"),
        "{}",
        outcome.summary
    );
    assert!(
        !outcome.summary.contains("faults: 0"),
        "{}",
        outcome.summary
    );
}

/// acks=1 with unclean election: a leader cut off from its followers keeps acknowledging
/// writes that the new leader never had, and they are lost when the partition heals. The
/// harness must say so.
#[test]
fn unsafe_configuration_is_caught_losing_writes() {
    let _one = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut opts = options("unsafe", "partition-leader,kill-leader", "127.0.252");
    opts.metadata = false;
    // One partition, so every fault aimed at a partition leader hits the one being written.
    opts.keys = 1;
    opts.acks = "1".into();
    opts.idempotence = false;
    opts.unclean_leader_election = true;
    opts.time_limit = Duration::from_secs(45);
    opts.interval = Duration::from_secs(3);
    let outcome = run(&opts).expect("the run completes");
    assert!(
        !outcome.valid,
        "acks=1 under partitions must lose acknowledged writes; report in {}:\n{}",
        outcome.dir.display(),
        outcome.summary
    );
    assert!(
        outcome.summary.contains("lost-write") || outcome.summary.contains("log model: invalid"),
        "{}",
        outcome.summary
    );
}
