#!/usr/bin/env bash
# Single-node throughput/latency bench: Gregor vs Apache Kafka 4.4.0 (KAFKA_VERSION selects another) (KRaft, combined mode),
# one after the other on this machine, driven by Kafka's own perf tools (bin/kafka).
# See bench/README.md.
#
#   bench/run.sh                      # both brokers, 500000 records of 1 KiB
#   bench/run.sh --records 50000      # smaller run
#   bench/run.sh --only kafka         # Apache Kafka only (no Gregor binary needed)
#   bench/run.sh --only gregor        # Gregor only
#   bench/run.sh --compression-type zstd   # producers compress (brokers validate every record)
#
# Options: --records N, --record-size BYTES, --warmup N (records produced to a separate topic
#          before measuring; default min(100000, records); 0 = none), --only gregor|kafka,
#          --compression-type none|gzip|snappy|lz4|zstd (the producers' compression.type,
#          default none), --keep (keep the data dirs and logs), -h|--help.
# Environment: GREGOR_BIN (default target/release/gregor), GREGOR_PORT (19092),
#   KAFKA_PORT (29092), KAFKA_CONTROLLER_PORT (29093), BENCH_KAFKA_HEAP (-Xmx1g -Xms1g),
#   GREGOR_EXTRA_CONFIG (a file appended to Gregor's properties), BENCH_TMP (parent of the
#   data dirs, default $TMPDIR or /tmp), BENCH_TOOL_TIMEOUT (seconds per tool run, 900).
set -euo pipefail

root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
kafka_tool="$root/bin/kafka"

records=500000
record_size=1024
warmup=""
only=""
keep=0
compression_type=none
while [[ $# -gt 0 ]]; do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --records=*) records="${1#*=}"; shift ;;
    --record-size) record_size="$2"; shift 2 ;;
    --record-size=*) record_size="${1#*=}"; shift ;;
    --warmup) warmup="$2"; shift 2 ;;
    --warmup=*) warmup="${1#*=}"; shift ;;
    --only) only="$2"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    --compression-type) compression_type="$2"; shift 2 ;;
    --compression-type=*) compression_type="${1#*=}"; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ "$records" =~ ^[0-9]+$ && "$records" -gt 0 ]] || { echo "bench: --records must be a positive integer" >&2; exit 2; }
[[ "$record_size" =~ ^[0-9]+$ && "$record_size" -gt 0 ]] || { echo "bench: --record-size must be a positive integer" >&2; exit 2; }
if [[ -z "$warmup" ]]; then warmup=$(( records < 100000 ? records : 100000 )); fi
[[ "$warmup" =~ ^[0-9]+$ ]] || { echo "bench: --warmup must be a non-negative integer" >&2; exit 2; }
case "$only" in ""|gregor|kafka) ;; *) echo "bench: --only takes gregor or kafka" >&2; exit 2 ;; esac
case "$compression_type" in none|gzip|snappy|lz4|zstd) ;; *) echo "bench: --compression-type takes none, gzip, snappy, lz4 or zstd" >&2; exit 2 ;; esac

gregor_bin="${GREGOR_BIN:-$root/target/release/gregor}"
gregor_port="${GREGOR_PORT:-19092}"
kafka_port="${KAFKA_PORT:-29092}"
kafka_cport="${KAFKA_CONTROLLER_PORT:-29093}"
kafka_heap="${BENCH_KAFKA_HEAP:--Xmx1g -Xms1g}"
tool_timeout="${BENCH_TOOL_TIMEOUT:-900}"
topic="bench-$(date +%s)"

run_gregor=1; run_kafka=1
[[ "$only" == kafka ]] && run_gregor=0
[[ "$only" == gregor ]] && run_kafka=0
if [[ $run_gregor -eq 1 && ! -x "$gregor_bin" ]]; then
  echo "bench: Gregor binary not found at $gregor_bin (cargo build --release, set GREGOR_BIN, or --only kafka)" >&2
  exit 1
fi

work="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/gregor-bench.XXXXXX")"
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

run_kafka_side() {
  check_port_free "$kafka_port"; check_port_free "$kafka_cport"
  local dir="$work/kafka" conf="$work/kafka.properties"
  mkdir -p "$dir"
  cat >"$conf" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$kafka_cport
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$kafka_cport
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$kafka_cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  local cluster_id
  "$root/scripts/kafka-jars.sh" >/dev/null
  cluster_id="$("$kafka_tool" storage random-uuid)"
  log "kafka: formatting $dir (cluster id $cluster_id)"
  tool "$work/kafka-format.out" storage format --standalone -t "$cluster_id" -c "$conf" \
    || { cat "$work/kafka-format.out" >&2; return 1; }

  log "kafka: starting Apache Kafka ${KAFKA_VERSION:-4.4.0} on 127.0.0.1:$kafka_port (heap: $kafka_heap)"
  local start pid
  start="$(now_ms)"
  KAFKA_HEAP_OPTS="$kafka_heap" "$kafka_tool" server "$conf" >"$work/kafka.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  bench_broker kafka "$pid" "$kafka_port" "$start"
  log "kafka: stopping"
  stop_broker "$pid"
}

run_gregor_side() {
  check_port_free "$gregor_port"
  local dir="$work/gregor" conf="$work/gregor.properties"
  mkdir -p "$dir"
  cat >"$conf" <<EOF
node.id=1
listeners=PLAINTEXT://127.0.0.1:$gregor_port
advertised.listeners=PLAINTEXT://127.0.0.1:$gregor_port
log.dirs=$dir
num.partitions=1
offsets.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
EOF
  if [[ -n "${GREGOR_EXTRA_CONFIG:-}" ]]; then cat "$GREGOR_EXTRA_CONFIG" >>"$conf"; fi
  "$root/scripts/kafka-jars.sh" >/dev/null

  log "gregor: starting $gregor_bin on 127.0.0.1:$gregor_port"
  local start pid
  start="$(now_ms)"
  "$gregor_bin" --config "$conf" >"$work/gregor.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  bench_broker gregor "$pid" "$gregor_port" "$start"
  log "gregor: stopping"
  stop_broker "$pid"
}

if [[ $run_gregor -eq 1 ]]; then run_gregor_side; fi
if [[ $run_kafka -eq 1 ]]; then run_kafka_side; fi

# ---- report ---------------------------------------------------------------------------------
fmt() {
  local v="${R[$1]:-}"
  if [[ -z "$v" ]]; then echo "-"
  elif [[ "$v" =~ ^[0-9]+\.[0-9]{3,}$ ]]; then printf '%.2f\n' "$v"
  else echo "$v"; fi
}
ratio() {
  local g="${R[gregor.$1]:-}" k="${R[kafka.$1]:-}"
  if [[ "$g" =~ ^[0-9.]+$ && "$k" =~ ^[0-9.]+$ ]]; then
    awk -v g="$g" -v k="$k" 'BEGIN { if (k + 0 == 0) print "-"; else printf "%.2f", g / k }'
  else echo "-"; fi
}
stamp="$(date +%Y%m%d-%H%M%S)"
report="$(
  echo "Gregor vs Apache Kafka ${KAFKA_VERSION:-4.4.0}, single node on 127.0.0.1 - $(date '+%Y-%m-%d %H:%M:%S %z')"
  echo "records per producer run: $records x $record_size B, unthrottled, compression.type=$compression_type; 1 topic, 1 partition; warm-up: $warmup records"
  echo "host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); gregor: $([[ $run_gregor -eq 1 ]] && echo "$gregor_bin (git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))" || echo skipped); kafka: $([[ $run_kafka -eq 1 ]] && echo "KRaft combined, heap $kafka_heap" || echo skipped)"
  echo
  printf '%-38s %14s %14s %14s\n' "metric" "Gregor" "Kafka" "Gregor/Kafka"
  printf '%-38s %14s %14s %14s\n' "------" "------" "-----" "------------"
  row() { printf '%-38s %14s %14s %14s\n' "$1" "$(fmt "gregor.$2")" "$(fmt "kafka.$2")" "$(ratio "$2")"; }
  row "start-up to ApiVersions (ms)"        startup_ms
  row "start-up to topic created (ms)"      ready_ms
  for acks in 1 all; do
    row "produce acks=$acks records/s"      "p$acks.rps"
    row "produce acks=$acks MB/s"           "p$acks.mbs"
    row "produce acks=$acks avg latency ms" "p$acks.avg"
    row "produce acks=$acks p50 latency ms" "p$acks.p50"
    row "produce acks=$acks p99 latency ms" "p$acks.p99"
    row "produce acks=$acks max latency ms" "p$acks.max"
  done
  row "consume records/s"                   c.rps
  row "consume MB/s"                        c.mbs
  row "consume MB/s (fetch only)"           c.fmbs
  row "consume group join (ms)"             c.rebalance
  row "consume records read"                c.msgs
  row "broker peak RSS (MiB)"               rss_mb
  echo
  echo "Throughput: higher is better; latency, start-up and RSS: lower is better."
)"
mkdir -p "$root/bench/results"
echo "$report" >"$root/bench/results/$stamp.txt"
echo "$report"
log "saved bench/results/$stamp.txt"
