//! Network faults between nodes: iptables rules dropping the packets from one node's loopback
//! address to another's. Clients (on 127.0.0.1) still reach every node, as in a partition
//! that splits only the servers.
//!
//! Every rule carries the comment `gregor-jepsen`, so a heal removes exactly ours, including
//! those a crashed earlier run left behind.

use std::process::Command;

use anyhow::{bail, Context, Result};

const COMMENT: &str = "gregor-jepsen";

/// Drops every packet from `a` to `b` and from `b` to `a`.
pub fn cut(a: &str, b: &str) -> Result<()> {
    for (src, dst) in [(a, b), (b, a)] {
        let status = Command::new("iptables")
            .args(["-w", "-A", "INPUT", "-s", src, "-d", dst])
            .args(["-m", "comment", "--comment", COMMENT, "-j", "DROP"])
            .status()
            .context("running iptables")?;
        if !status.success() {
            bail!("iptables -A INPUT -s {src} -d {dst} failed ({status})");
        }
    }
    Ok(())
}

/// Cuts every link between the two sides.
pub fn partition(side_a: &[String], side_b: &[String]) -> Result<()> {
    for a in side_a {
        for b in side_b {
            cut(a, b)?;
        }
    }
    Ok(())
}

/// Removes every rule this harness added.
pub fn heal() -> Result<()> {
    let out = Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
        .context("running iptables")?;
    if !out.status.success() {
        bail!(
            "iptables -S failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains(COMMENT) {
            continue;
        }
        // `-A INPUT ...` becomes `-D INPUT ...`; the comment's quotes are iptables-save's.
        let args: Vec<String> = line
            .trim_start_matches("-A ")
            .split_whitespace()
            .map(|s| s.trim_matches('"').to_string())
            .collect();
        let status = Command::new("iptables")
            .args(["-w", "-D"])
            .args(&args)
            .status()
            .context("running iptables")?;
        if !status.success() {
            bail!("iptables -D {line} failed");
        }
    }
    Ok(())
}

/// Whether iptables can be used here (root, and the binary present).
pub fn available() -> bool {
    Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
