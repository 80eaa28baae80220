#!/usr/bin/env bash
# Installs what building and testing Gregor needs and is missing: system packages (apt),
# the Apache Kafka 4.x CLI jars (Maven Central, cached outside the repo) and the Python
# client venv. Safe to run again; it only installs what is absent.
#
#   scripts/deps.sh            # everything
#   scripts/deps.sh --build    # only what `cargo build` needs
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_only=0
[[ "${1:-}" == "--build" ]] && build_only=1

log() { echo "deps: $*" >&2; }

missing=()
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [[ $build_only -eq 0 ]]; then
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  command -v python3 >/dev/null || missing+=(python3 python3-venv)
  command -v iptables >/dev/null || missing+=(iptables)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    log "please install: ${missing[*]}"
    exit 1
  fi
fi
if ! command -v cargo >/dev/null; then
  log "cargo not found: install Rust (rustup) first"
  exit 1
fi
if [[ $build_only -eq 0 ]]; then
  "$root/scripts/kafka-jars.sh" >/dev/null
  "$root/scripts/python-env.sh" >/dev/null
fi
log "ok"
