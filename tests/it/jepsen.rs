//! A short run of the jepsen/ harness (see docs/jepsen.md): the safe configuration under every
//! kind of fault, checked by the Rust checkers and, where Go is installed, by porcupine. The
//! long runs are `make jepsen`.

use std::path::PathBuf;
use std::time::Duration;

use gregor_jepsen::nemesis::parse_faults;
use gregor_jepsen::runner::{build_porcupine, run, RunOptions};

#[test]
fn safe_configuration_survives_every_fault() {
    let store = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jepsen-smoke");
    let mut opts = RunOptions::safe(PathBuf::from(env!("CARGO_BIN_EXE_gregor")), store.clone());
    opts.name = "smoke".into();
    opts.time_limit = Duration::from_secs(40);
    opts.interval = Duration::from_secs(4);
    opts.rate = 60.0;
    opts.concurrency = 3;
    opts.keys = 2;
    opts.registers = 2;
    opts.faults = parse_faults("all").unwrap();
    opts.seed = 1;
    opts.porcupine = build_porcupine(&store.join("bin")).expect("building porcupine-check");
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
