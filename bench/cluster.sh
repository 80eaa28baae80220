#!/usr/bin/env bash
# Three-node cluster bench: Gregor vs Apache Kafka 4.4.0 (KAFKA_VERSION selects another) (KRaft, combined mode), replication
# factor 3, acks=all, min.insync.replicas=2, one system after the other on this machine, driven
# by Kafka's own perf tools (bin/kafka). See bench/README.md.
#
#   bench/cluster.sh                      # both systems, 300000 records of 1 KiB
#   bench/cluster.sh --records 100000     # smaller run
#   bench/cluster.sh --only kafka         # Apache Kafka only (no Gregor binary needed)
#   bench/cluster.sh --only gregor        # Gregor only
#
# Options: --records N, --record-size BYTES, --warmup N (records produced to a separate RF=3
#          topic before measuring; default 50000; 0 = none), --partitions N (default 3),
#          --only gregor|kafka, --keep (keep the data dirs and logs), -h|--help.
# Environment: GREGOR_BIN (default target/release/gregor), BENCH_KAFKA_HEAP (per Kafka node,
#   -Xmx512m -Xms512m), GREGOR_EXTRA_CONFIG (a file appended to every Gregor node's properties),
#   BENCH_TMP (parent of the data dirs, default $TMPDIR or /tmp), BENCH_TOOL_TIMEOUT (seconds
#   per tool run, 900). Ports: Gregor 19092-19094 (controller 19192-19194), Kafka 29092-29094
#   (controller 29192-29194).
set -euo pipefail

root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
kafka_tool="$root/bin/kafka"

records=300000
record_size=1024
warmup=50000
partitions=3
only=""
keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --records) records="$2"; shift 2 ;;
    --records=*) records="${1#*=}"; shift ;;
    --record-size) record_size="$2"; shift 2 ;;
    --record-size=*) record_size="${1#*=}"; shift ;;
    --warmup) warmup="$2"; shift 2 ;;
    --warmup=*) warmup="${1#*=}"; shift ;;
    --partitions) partitions="$2"; shift 2 ;;
    --partitions=*) partitions="${1#*=}"; shift ;;
    --only) only="$2"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ "$records" =~ ^[0-9]+$ && "$records" -gt 0 ]] || { echo "bench: --records must be a positive integer" >&2; exit 2; }
[[ "$record_size" =~ ^[0-9]+$ && "$record_size" -gt 0 ]] || { echo "bench: --record-size must be a positive integer" >&2; exit 2; }
[[ "$warmup" =~ ^[0-9]+$ ]] || { echo "bench: --warmup must be a non-negative integer" >&2; exit 2; }
[[ "$partitions" =~ ^[0-9]+$ && "$partitions" -gt 0 ]] || { echo "bench: --partitions must be a positive integer" >&2; exit 2; }
case "$only" in ""|gregor|kafka) ;; *) echo "bench: --only takes gregor or kafka" >&2; exit 2 ;; esac

gregor_bin="${GREGOR_BIN:-$root/target/release/gregor}"
kafka_heap="${BENCH_KAFKA_HEAP:--Xmx512m -Xms512m}"
tool_timeout="${BENCH_TOOL_TIMEOUT:-900}"
topic="cluster-bench-$(date +%s)"
NODES=(1 2 3)
gregor_port() { echo $(( 19091 + $1 )); }
gregor_cport() { echo $(( 19191 + $1 )); }
kafka_port() { echo $(( 29091 + $1 )); }
kafka_cport() { echo $(( 29191 + $1 )); }

run_gregor=1; run_kafka=1
[[ "$only" == kafka ]] && run_gregor=0
[[ "$only" == gregor ]] && run_kafka=0
if [[ $run_gregor -eq 1 && ! -x "$gregor_bin" ]]; then
  echo "bench: Gregor binary not found at $gregor_bin (cargo build --release, set GREGOR_BIN, or --only kafka)" >&2
  exit 1
fi

work="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/gregor-cluster-bench.XXXXXX")"
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

# all_alive SYS PID...: fails (and shows the log tail) if one of the node processes has exited.
all_alive() {
  local sys="$1" i=0 pid; shift
  for pid in "$@"; do
    i=$(( i + 1 ))
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$sys node $i exited; last log lines:"; tail -n 30 "$work/$sys-node$i.log" >&2 || true
      return 1
    fi
  done
}

# wait_ready SYS START_MS PORTS PIDS: polls until every node answers ApiVersions; prints ms.
wait_ready() {
  local sys="$1" start="$2" ports="$3" pids="$4" deadline=$(( $(now_ms) + 120000 )) port ok
  while (( $(now_ms) < deadline )); do
    # shellcheck disable=SC2086
    all_alive "$sys" $pids || return 1
    ok=1
    for port in $ports; do
      probe_api_versions "$port" 3 || probe_api_versions "$port" 0 || { ok=0; break; }
    done
    if [[ $ok -eq 1 ]]; then echo $(( $(now_ms) - start )); return 0; fi
    sleep 0.05
  done
  log "$sys: not every node answered ApiVersions on $ports within 120 s"
  return 1
}

stop_nodes() {
  local pid
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
  done
}

# create_topic SYS BOOTSTRAP NAME PIDS: creates an RF=3 topic, retrying while the cluster settles.
create_topic() {
  local sys="$1" bootstrap="$2" name="$3" pids="$4" out="$work/$1-topic-$3.out" i
  for i in $(seq 1 90); do
    if tool "$out" topics --bootstrap-server "$bootstrap" --create --topic "$name" \
         --partitions "$partitions" --replication-factor 3 \
         --config min.insync.replicas=2; then return 0; fi
    if grep -q 'already exists' "$out"; then return 0; fi
    # shellcheck disable=SC2086
    all_alive "$sys" $pids || return 1
    sleep 1
  done
  log "$sys: creating topic $name (RF 3) failed:"; cat "$out" >&2
  return 1
}

declare -A R   # results: R[<system>.<metric>]

# bench_cluster SYS START_MS PORTS PIDS: the common part once the three nodes are running.
bench_cluster() {
  local sys="$1" start="$2" ports="$3" pids="$4" ms port bootstrap="" first
  for port in $ports; do bootstrap+="${bootstrap:+,}127.0.0.1:$port"; done
  first="127.0.0.1:${ports%% *}"

  ms="$(wait_ready "$sys" "$start" "$ports" "$pids")"
  R[$sys.startup_ms]="$ms"
  log "$sys: all three nodes answer ApiVersions after $ms ms"

  local listed=0 i
  for i in $(seq 1 90); do
    if tool "$work/$sys-list.out" topics --bootstrap-server "$first" --list; then listed=1; break; fi
    # shellcheck disable=SC2086
    all_alive "$sys" $pids || return 1
    sleep 1
  done
  [[ $listed -eq 1 ]] || { log "$sys: kafka-topics --list failed:"; cat "$work/$sys-list.out" >&2; return 1; }
  create_topic "$sys" "$first" "$topic" "$pids"
  R[$sys.ready_ms]=$(( $(now_ms) - start ))
  log "$sys: topic $topic ($partitions partitions, RF 3) created ${R[$sys.ready_ms]} ms after start"

  if [[ $warmup -gt 0 ]]; then
    log "$sys: warm-up, $warmup records to $topic-warmup (not measured)"
    create_topic "$sys" "$first" "$topic-warmup" "$pids"
    tool "$work/$sys-warmup.out" producer-perf-test --topic "$topic-warmup" --num-records "$warmup" \
      --record-size "$record_size" --throughput -1 \
      --producer-props "bootstrap.servers=$bootstrap" acks=all \
      || { log "$sys: warm-up failed:"; tail -n 20 "$work/$sys-warmup.out" >&2; return 1; }
  fi

  log "$sys: producer-perf-test, $records x $record_size B, acks=all"
  local out="$work/$sys-produce.out" line
  if ! tool "$out" producer-perf-test --topic "$topic" --num-records "$records" \
       --record-size "$record_size" --throughput -1 \
       --producer-props "bootstrap.servers=$bootstrap" acks=all; then
    log "$sys: producer-perf-test failed:"; tail -n 20 "$out" >&2; return 1
  fi
  line="$(grep -E 'records sent,.*99\.9th' "$out" | tail -n 1)"
  [[ -n "$line" ]] || { log "$sys: no summary from producer-perf-test:"; tail -n 20 "$out" >&2; return 1; }
  echo "$line" >&2
  R[$sys.p.rps]="$(sed -E 's/.* ([0-9.]+) records\/sec.*/\1/' <<<"$line")"
  R[$sys.p.mbs]="$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<<"$line")"
  R[$sys.p.avg]="$(sed -E 's/.* ([0-9.]+) ms avg latency.*/\1/' <<<"$line")"
  R[$sys.p.max]="$(sed -E 's/.* ([0-9.]+) ms max latency.*/\1/' <<<"$line")"
  R[$sys.p.p50]="$(sed -E 's/.* ([0-9.]+) ms 50th.*/\1/' <<<"$line")"
  R[$sys.p.p99]="$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$line")"

  if tool "$work/$sys-describe.out" topics --bootstrap-server "$first" --describe --topic "$topic"; then
    log "$sys: replicas / in-sync replicas of $topic after the producer run:"
    grep -E 'Partition: ' "$work/$sys-describe.out" | sed -E 's/^[[:space:]]*Topic: [^[:space:]]+[[:space:]]*/  /' >&2 || true
  else
    log "$sys: WARNING kafka-topics --describe failed"; tail -n 5 "$work/$sys-describe.out" >&2
  fi

  consume_perf "$sys" "$bootstrap" "$topic" "$records" "cluster-bench-$sys-$$" || return 1

  local pid kb total_kb=0 each=""
  for pid in $pids; do
    kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    [[ "$kb" =~ ^[0-9]+$ ]] || { total_kb=""; break; }
    total_kb=$(( total_kb + kb )); each+="${each:+ + }$(( kb / 1024 ))"
  done
  if [[ -n "$total_kb" ]]; then
    R[$sys.rss_mb]="$(awk -v k="$total_kb" 'BEGIN {printf "%.1f", k/1024}')"
    log "$sys: peak RSS ${R[$sys.rss_mb]} MiB ($each MiB)"
  else
    R[$sys.rss_mb]="?"
  fi
}

run_gregor_side() {
  local i pids="" ports="" start pid conf
  for i in "${NODES[@]}"; do check_port_free "$(gregor_port "$i")"; check_port_free "$(gregor_cport "$i")"; done
  local voters
  voters="1@127.0.0.1:$(gregor_cport 1),2@127.0.0.1:$(gregor_cport 2),3@127.0.0.1:$(gregor_cport 3)"
  for i in "${NODES[@]}"; do
    mkdir -p "$work/gregor/node-$i"
    conf="$work/gregor-node$i.properties"
    cat >"$conf" <<EOF
node.id=$i
listeners=PLAINTEXT://127.0.0.1:$(gregor_port "$i"),CONTROLLER://127.0.0.1:$(gregor_cport "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(gregor_port "$i")
controller.listener.names=CONTROLLER
controller.quorum.voters=$voters
log.dirs=$work/gregor/node-$i
num.partitions=1
min.insync.replicas=2
group.initial.rebalance.delay.ms=0
EOF
    if [[ -n "${GREGOR_EXTRA_CONFIG:-}" ]]; then cat "$GREGOR_EXTRA_CONFIG" >>"$conf"; fi
  done
  "$root/scripts/kafka-jars.sh" >/dev/null

  log "gregor: starting 3 nodes of $gregor_bin on 127.0.0.1:$(gregor_port 1)-$(gregor_port 3)"
  start="$(now_ms)"
  for i in "${NODES[@]}"; do
    "$gregor_bin" --config "$work/gregor-node$i.properties" >"$work/gregor-node$i.log" 2>&1 &
    pid=$!
    PIDS+=("$pid"); pids+="${pids:+ }$pid"; ports+="${ports:+ }$(gregor_port "$i")"
  done
  bench_cluster gregor "$start" "$ports" "$pids"
  log "gregor: stopping"
  # shellcheck disable=SC2086
  stop_nodes $pids
}

run_kafka_side() {
  local i pids="" ports="" start pid conf cluster_id
  for i in "${NODES[@]}"; do check_port_free "$(kafka_port "$i")"; check_port_free "$(kafka_cport "$i")"; done
  local voters
  voters="1@127.0.0.1:$(kafka_cport 1),2@127.0.0.1:$(kafka_cport 2),3@127.0.0.1:$(kafka_cport 3)"
  for i in "${NODES[@]}"; do
    mkdir -p "$work/kafka/node-$i"
    conf="$work/kafka-node$i.properties"
    cat >"$conf" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$i"),CONTROLLER://127.0.0.1:$(kafka_cport "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(kafka_port "$i")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$work/kafka/node-$i
num.partitions=1
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
EOF
  done
  "$root/scripts/kafka-jars.sh" >/dev/null
  cluster_id="$("$kafka_tool" storage random-uuid)"
  for i in "${NODES[@]}"; do
    log "kafka: formatting node $i (cluster id $cluster_id, static voters)"
    tool "$work/kafka-format$i.out" storage format -t "$cluster_id" -c "$work/kafka-node$i.properties" \
      || { cat "$work/kafka-format$i.out" >&2; return 1; }
  done

  log "kafka: starting 3 Apache Kafka ${KAFKA_VERSION:-4.4.0} nodes on 127.0.0.1:$(kafka_port 1)-$(kafka_port 3) (heap per node: $kafka_heap)"
  start="$(now_ms)"
  for i in "${NODES[@]}"; do
    KAFKA_HEAP_OPTS="$kafka_heap" "$kafka_tool" server "$work/kafka-node$i.properties" >"$work/kafka-node$i.log" 2>&1 &
    pid=$!
    PIDS+=("$pid"); pids+="${pids:+ }$pid"; ports+="${ports:+ }$(kafka_port "$i")"
  done
  bench_cluster kafka "$start" "$ports" "$pids"
  log "kafka: stopping"
  # shellcheck disable=SC2086
  stop_nodes $pids
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
  echo "Gregor vs Apache Kafka ${KAFKA_VERSION:-4.4.0}, 3-node cluster on 127.0.0.1 - $(date '+%Y-%m-%d %H:%M:%S %z')"
  echo "replication factor 3, acks=all, min.insync.replicas=2; 1 topic, $partitions partitions"
  echo "records per producer run: $records x $record_size B, unthrottled; warm-up: $warmup records"
  echo "host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); gregor: $([[ $run_gregor -eq 1 ]] && echo "$gregor_bin (git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))" || echo skipped); kafka: $([[ $run_kafka -eq 1 ]] && echo "KRaft combined x3, heap $kafka_heap per node" || echo skipped)"
  echo
  printf '%-38s %14s %14s %14s\n' "metric" "Gregor" "Kafka" "Gregor/Kafka"
  printf '%-38s %14s %14s %14s\n' "------" "------" "-----" "------------"
  row() { printf '%-38s %14s %14s %14s\n' "$1" "$(fmt "gregor.$2")" "$(fmt "kafka.$2")" "$(ratio "$2")"; }
  row "start-up to ApiVersions, 3 nodes (ms)" startup_ms
  row "start-up to RF=3 topic created (ms)"  ready_ms
  row "produce acks=all records/s"           p.rps
  row "produce acks=all MB/s"                p.mbs
  row "produce acks=all avg latency ms"      p.avg
  row "produce acks=all p50 latency ms"      p.p50
  row "produce acks=all p99 latency ms"      p.p99
  row "produce acks=all max latency ms"      p.max
  row "consume records/s"                    c.rps
  row "consume MB/s"                         c.mbs
  row "consume MB/s (fetch only)"            c.fmbs
  row "consume group join (ms)"              c.rebalance
  row "consume records read"                 c.msgs
  row "peak RSS, sum of 3 nodes (MiB)"       rss_mb
  echo
  echo "Throughput: higher is better; latency, start-up and RSS: lower is better."
)"
mkdir -p "$root/bench/results"
echo "$report" >"$root/bench/results/cluster-$stamp.txt"
echo "$report"
log "saved bench/results/cluster-$stamp.txt"
