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

/// Removes the rules this harness added between the given nodes (so concurrent runs on other
/// addresses keep theirs).
pub fn heal(hosts: &[String]) -> Result<()> {
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
        let words: Vec<&str> = line.split_whitespace().collect();
        let ours = |flag: &str| {
            words
                .windows(2)
                .any(|w| w[0] == flag && hosts.iter().any(|h| w[1].trim_end_matches("/32") == h))
        };
        if !(line.contains(COMMENT) && ours("-s") && ours("-d")) {
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
