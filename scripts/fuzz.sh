#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer, stable toolchain, no sanitizer) and
# runs each for a bounded time, starting from the committed seeds in fuzz/corpus/<target>.
# Prints one line per target with its executions; exits non-zero if any target crashed.
#
#   scripts/fuzz.sh                      # every target, FUZZ_SECONDS (default 25) each
#   scripts/fuzz.sh request raft_wire    # some targets
#   FUZZ_SECONDS=3600 scripts/fuzz.sh record_batch
#   scripts/fuzz.sh --build              # only build
#   scripts/fuzz.sh --capture            # re-record fuzz/corpus from real clients
#                                        # (scripts/fuzz-capture.py; needs GREGOR_BIN)
#
# Environment:
#   FUZZ_SECONDS      seconds per target (default 25)
#   FUZZ_TARGET_DIR   the targets' cargo target directory (default /var/tmp/gregor-fuzz-target).
#                     Kept apart from the main build: the instrumentation flags differ, and
#                     cargo-fuzz's --target build keeps them off the host build scripts, so
#                     RocksDB's C++ is compiled once per directory.
#   FUZZ_WORK         where the growing corpora and crash inputs live (default
#                     /var/tmp/gregor-fuzz-work); the committed seeds are only read.
#   FUZZ_RSS_LIMIT_MB libFuzzer's -rss_limit_mb (default 3072)
#   GREGOR_FUZZ_MALLOC_LIMIT_MB  largest single allocation a target may make (default 512)
#   FUZZ_ARGS         extra libFuzzer options
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

ALL_TARGETS=(request record_batch metadata_records raft_wire properties)
CARGO_FUZZ_VERSION=0.13.2
# Targets whose crashes are known and being fixed elsewhere: reported, not failing (none now).
KNOWN_CRASHING="${FUZZ_KNOWN_CRASHING-}"
seconds="${FUZZ_SECONDS:-25}"
target_dir="${FUZZ_TARGET_DIR:-/var/tmp/gregor-fuzz-target}"
work="${FUZZ_WORK:-/var/tmp/gregor-fuzz-work}"
rss_limit="${FUZZ_RSS_LIMIT_MB:-3072}"
triple="$(rustc -vV | sed -n 's/^host: //p')"

log() { echo "fuzz: $*" >&2; }

if [[ "${1:-}" == "--capture" ]]; then
  shift
  exec python3 "$root/scripts/fuzz-capture.py" "$@"
fi

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked --quiet cargo-fuzz --version "$CARGO_FUZZ_VERSION" >&2
fi

cargo fmt --manifest-path fuzz/Cargo.toml -- --check >&2

build() {
  # --sanitizer none: sanitizers need a nightly compiler. Release with debug assertions and
  # overflow checks (cargo-fuzz's default), as the `checked` profile of the tests.
  cargo fuzz build --fuzz-dir fuzz --sanitizer none --target-dir "$target_dir" \
    --codegen-units 16 "$@" >&2
}

if [[ "${1:-}" == "--build" ]]; then
  build
  exit 0
fi

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")
started=$(date +%s)
build
log "built in $(( $(date +%s) - started )) s"

# The in-process broker holds a few files per partition the inputs create.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
failed=()
summary=()
for t in "${targets[@]}"; do
  bin="$target_dir/$triple/release/$t"
  [[ -x "$bin" ]] || { log "no fuzz target $t"; exit 2; }
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts"
  out="$work/$t.log"
  status=0
  # Targets keep their data (the broker's logs, the partition logs) in temporary directories
  # that live as long as the process: give each run its own, removed afterwards.
  rm -rf "$work/tmp/$t" && mkdir -p "$work/tmp/$t"
  # The first corpus directory receives new inputs; the committed seeds are only read.
  TMPDIR="$work/tmp/$t" "$bin" "$corpus" "fuzz/corpus/$t" \
    -max_total_time="$seconds" -rss_limit_mb="$rss_limit" -timeout=30 \
    -artifact_prefix="$artifacts" -print_final_stats=1 ${FUZZ_ARGS:-} >"$out" 2>&1 || status=$?
  rm -rf "$work/tmp/$t"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)"
  cov="$( (grep -o 'cov: [0-9]*' "$out" || true) | tail -1 | cut -d' ' -f2)"
  units="$(ls "$corpus" | wc -l)"
  if [[ $status -eq 0 ]]; then
    summary+=("fuzz: $t: ${runs:-0} executions in ${seconds} s (${rate:-0}/s), coverage ${cov:-0}, corpus $units, no crash")
  else
    crash="$( (grep -o "Test unit written to [^ ]*" "$out" || true) | tail -1 | sed 's/Test unit written to //')"
    if [[ " $KNOWN_CRASHING " == *" $t "* ]]; then
      summary+=("fuzz: $t: known crash (FUZZ_KNOWN_CRASHING) after ${runs:-?} executions: ${crash:-see $out}")
      continue
    fi
    summary+=("fuzz: $t: CRASH after ${runs:-?} executions: ${crash:-see $out}")
    failed+=("$t")
    log "$t crashed; its output:"
    grep -v '^#[0-9]' "$out" | tail -40 >&2
  fi
done
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  log "crashed: ${failed[*]} (reproduce: $target_dir/$triple/release/<target> <crash file>)"
  exit 1
fi
