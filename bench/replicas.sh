#!/usr/bin/env bash
# Memory and open files per replica: starts a fresh 3-node Gregor cluster per run, creates
# topics with replication factor 3 so that every node holds N replicas, loads every partition
# with Kafka's producer and consumer perf tools (one of each per topic, all topics at once),
# and reports per node: replicas, peak RSS, RSS and open files when idle and after the load,
# and, against a baseline run of 3 partitions, the RSS each active replica adds and the open
# files per replica. See bench/README.md.
#
#   bench/replicas.sh                           # baseline (3 partitions), then 1,000 and 10,000
#   bench/replicas.sh --replicas 1000           # baseline and 1,000 replicas per node
#   bench/replicas.sh --replicas 1000 --records 100000
#
# Options: --replicas N[,N...] (replicas per node, default 1000,10000), --baseline N (partitions
#          of the baseline run, default 3; 0 = no baseline), --records N (records per run over
#          all topics, default 300000), --record-size BYTES (1024), --partitions-per-topic N
#          (default 5000), --keep (keep data dirs and logs), -h|--help.
# Environment: GREGOR_BIN (default target/release/gregor), GREGOR_EXTRA_CONFIG (a file appended
#   to every node's properties), BENCH_TMP (parent of the data dirs), BENCH_TOOL_TIMEOUT (seconds
#   per tool run, 900), REPLICAS_BENCH_PORT (first Kafka port, 19392; controllers at +100),
#   KAFKA_HEAP_OPTS (heap of each perf-tool JVM, -Xmx512m).
set -euo pipefail

root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
kafka_tool="$root/bin/kafka"

replica_counts="1000,10000"
baseline=3
records=300000
record_size=1024
per_topic=5000
keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --replicas) replica_counts="$2"; shift 2 ;;
    --replicas=*) replica_counts="${1#*=}"; shift ;;
    --baseline) baseline="$2"; shift 2 ;;
    --baseline=*) baseline="${1#*=}"; shift ;;
    --records) records="$2"; shift 2 ;;
    --records=*) records="${1#*=}"; shift ;;
    --record-size) record_size="$2"; shift 2 ;;
    --record-size=*) record_size="${1#*=}"; shift ;;
    --partitions-per-topic) per_topic="$2"; shift 2 ;;
    --partitions-per-topic=*) per_topic="${1#*=}"; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument: $1" >&2; exit 2 ;;
  esac
done
positive() { [[ "$2" =~ ^[0-9]+$ && "$2" -gt 0 ]] || { echo "bench: $1 must be a positive integer" >&2; exit 2; }; }
positive --records "$records"
positive --record-size "$record_size"
positive --partitions-per-topic "$per_topic"
[[ "$baseline" =~ ^[0-9]+$ ]] || { echo "bench: --baseline must be a non-negative integer" >&2; exit 2; }
IFS=, read -r -a COUNTS <<<"$replica_counts"
for n in "${COUNTS[@]}"; do positive --replicas "$n"; done

gregor_bin="${GREGOR_BIN:-$root/target/release/gregor}"
tool_timeout="${BENCH_TOOL_TIMEOUT:-900}"
port_base="${REPLICAS_BENCH_PORT:-19392}"
NODES=(1 2 3)
gport() { echo $(( port_base + $1 - 1 )); }
cport() { echo $(( port_base + 100 + $1 - 1 )); }
[[ -x "$gregor_bin" ]] || { echo "bench: Gregor binary not found at $gregor_bin (cargo build --release or set GREGOR_BIN)" >&2; exit 1; }

work="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/gregor-replicas-bench.XXXXXX")"
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

kib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# Partition directories (`topic-N`) in a node's log dir: the replicas it holds.
replica_count() { find "$1" -mindepth 1 -maxdepth 1 -type d -regex '.*-[0-9]+' | wc -l; }

declare -A M   # M[<run>.<node>.<metric>] and M[<run>.<metric>]

# spawn_tool OUT ARGS...: starts a Kafka tool in the background (stopped on exit like every
# process in PIDS) and prints its pid; reap it with reap_tools.
spawn_tool() {
  local out="$1"; shift
  timeout --kill-after=10 "$tool_timeout" "$kafka_tool" "$@" >"$out" 2>&1 &
  PIDS+=("$!"); SPAWNED+=("$!")
}
# reap_tools WHAT: waits for every spawned tool; fails if one failed.
reap_tools() {
  local pid rc=0
  for pid in "${SPAWNED[@]}"; do
    wait "$pid" || rc=$?
    forget_pid "$pid"
  done
  SPAWNED=()
  [[ $rc -eq 0 ]] || { log "a $1 failed (exit $rc):"; tail -n 20 "$work"/*-"$1"-*.out >&2; return 1; }
}
SPAWNED=()

# run_one LABEL PARTITIONS: one fresh cluster with PARTITIONS partitions at RF 3.
run_one() {
  local label="$1" partitions="$2" i pid pids=() conf dir voters bootstrap=""
  voters="1@127.0.0.1:$(cport 1),2@127.0.0.1:$(cport 2),3@127.0.0.1:$(cport 3)"
  for i in "${NODES[@]}"; do
    check_port_free "$(gport "$i")"; check_port_free "$(cport "$i")"
    bootstrap+="${bootstrap:+,}127.0.0.1:$(gport "$i")"
  done
  for i in "${NODES[@]}"; do
    dir="$work/$label/node-$i"; mkdir -p "$dir"
    conf="$work/$label-node$i.properties"
    cat >"$conf" <<EOF
node.id=$i
listeners=PLAINTEXT://127.0.0.1:$(gport "$i"),CONTROLLER://127.0.0.1:$(cport "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(gport "$i")
controller.listener.names=CONTROLLER
controller.quorum.voters=$voters
log.dirs=$dir
num.partitions=1
min.insync.replicas=2
group.initial.rebalance.delay.ms=0
EOF
    if [[ -n "${GREGOR_EXTRA_CONFIG:-}" ]]; then cat "$GREGOR_EXTRA_CONFIG" >>"$conf"; fi
  done
  log "$label: starting 3 nodes on 127.0.0.1:$(gport 1)-$(gport 3)"
  for i in "${NODES[@]}"; do
    "$gregor_bin" --config "$work/$label-node$i.properties" >"$work/$label-node$i.log" 2>&1 &
    pid=$!; PIDS+=("$pid"); pids+=("$pid")
  done
  local deadline=$(( $(now_ms) + 120000 ))
  for i in "${NODES[@]}"; do
    until probe_api_versions "$(gport "$i")" 3; do
      kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { log "$label: node $i exited"; tail -n 30 "$work/$label-node$i.log" >&2; return 1; }
      (( $(now_ms) < deadline )) || { log "$label: node $i does not answer"; return 1; }
      sleep 0.1
    done
  done

  # Topics of at most per_topic partitions each.
  local topics=() left="$partitions" t=0 n out
  while (( left > 0 )); do
    n=$(( left < per_topic ? left : per_topic ))
    topics+=("replicas-bench-$t:$n"); left=$(( left - n )); t=$(( t + 1 ))
  done
  local spec name created
  for spec in "${topics[@]}"; do
    name="${spec%%:*}"; n="${spec##*:}"; out="$work/$label-create-$name.out"; created=0
    for _ in $(seq 1 60); do
      if tool "$out" topics --bootstrap-server "$bootstrap" --create --topic "$name" \
           --partitions "$n" --replication-factor 3 --config min.insync.replicas=2; then created=1; break; fi
      grep -q 'already exists' "$out" && { created=1; break; }
      sleep 1
    done
    [[ $created -eq 1 ]] || { log "$label: creating $name failed:"; tail -n 5 "$out" >&2; return 1; }
  done
  # Every replica exists on disk once its node applied the topic records.
  local want=$(( partitions )) have
  deadline=$(( $(now_ms) + 600000 ))
  for i in "${NODES[@]}"; do
    until have="$(replica_count "$work/$label/node-$i")"; (( have >= want )); do
      (( $(now_ms) < deadline )) || { log "$label: node $i holds $have of $want replicas"; return 1; }
      sleep 1
    done
  done
  log "$label: ${#topics[@]} topic(s), $partitions partitions at RF 3 created; letting the cluster settle"
  sleep 10
  for i in "${NODES[@]}"; do
    pid="${pids[$((i - 1))]}"
    M[$label.$i.idle_rss]="$(status_kb "$pid" VmRSS)"
    M[$label.$i.idle_fds]="$(fd_count "$pid")"
  done

  # Load: one producer-perf-test per topic, all at once, then one consumer-perf-test per topic.
  local per_records=$(( records / ${#topics[@]} )) start end line
  (( per_records > 0 )) || per_records=1
  log "$label: producing $per_records x $record_size B to each of ${#topics[@]} topic(s), acks=all"
  start="$(now_ms)"
  for spec in "${topics[@]}"; do
    name="${spec%%:*}"
    spawn_tool "$work/$label-produce-$name.out" producer-perf-test --topic "$name" --num-records "$per_records" \
      --record-size "$record_size" --throughput -1 --producer-props "bootstrap.servers=$bootstrap" acks=all
  done
  reap_tools produce
  end="$(now_ms)"
  for spec in "${topics[@]}"; do
    name="${spec%%:*}"
    line="$(grep -E 'records sent,.*99\.9th' "$work/$label-produce-$name.out" | tail -n 1)"
    [[ -n "$line" ]] || { log "$label: no summary from the producer of $name"; return 1; }
    echo "$line" >&2
  done
  M[$label.produce_mbs]="$(awk -v n="$(( per_records * ${#topics[@]} ))" -v b="$record_size" -v ms="$(( end - start ))" \
    'BEGIN {printf "%.1f", n * b / 1048576 / (ms / 1000)}')"
  M[$label.produce_rps]="$(awk -v n="$(( per_records * ${#topics[@]} ))" -v ms="$(( end - start ))" 'BEGIN {printf "%.0f", n / (ms / 1000)}')"
  log "$label: produced at ${M[$label.produce_mbs]} MiB/s overall (JVM start-up included)"

  log "$label: consuming every topic"
  start="$(now_ms)"
  for spec in "${topics[@]}"; do
    name="${spec%%:*}"
    spawn_tool "$work/$label-consume-$name.out" consumer-perf-test --bootstrap-server "$bootstrap" --topic "$name" \
      --messages "$per_records" --timeout 60000 --group "replicas-bench-$label-$name"
  done
  reap_tools consume
  end="$(now_ms)"
  M[$label.consume_mbs]="$(awk -v n="$(( per_records * ${#topics[@]} ))" -v b="$record_size" -v ms="$(( end - start ))" \
    'BEGIN {printf "%.1f", n * b / 1048576 / (ms / 1000)}')"

  for i in "${NODES[@]}"; do
    pid="${pids[$((i - 1))]}"
    kill -0 "$pid" 2>/dev/null || { log "$label: node $i exited"; tail -n 30 "$work/$label-node$i.log" >&2; return 1; }
    M[$label.$i.replicas]="$(replica_count "$work/$label/node-$i")"
    M[$label.$i.hwm]="$(status_kb "$pid" VmHWM)"
    M[$label.$i.rss]="$(status_kb "$pid" VmRSS)"
    M[$label.$i.fds]="$(fd_count "$pid")"
  done
  log "$label: stopping"
  for pid in "${pids[@]}"; do stop_broker "$pid"; done
  rm -rf "${work:?}/$label"
}

labels=()
if (( baseline > 0 )); then run_one base "$baseline"; labels+=(base); fi
for n in "${COUNTS[@]}"; do run_one "r$n" "$n"; labels+=("r$n"); done

# ---- report ---------------------------------------------------------------------------------
stamp="$(date +%Y%m%d-%H%M%S)"
report="$(
  echo "Gregor replicas per node: memory and open files - $(date '+%Y-%m-%d %H:%M:%S %z')"
  echo "3 nodes on 127.0.0.1, replication factor 3, acks=all, min.insync.replicas=2; $records x $record_size B per run over all topics"
  echo "host: $(nproc) cores; gregor: $gregor_bin (git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
  echo
  printf '%-7s %4s %9s %10s %10s %10s %8s %8s %9s %10s %9s\n' run node replicas "idle RSS" "peak RSS" "RSS after" "idle fds" "fds" "fds/repl" "KiB/repl" "prod MiB/s"
  for label in "${labels[@]}"; do
    for i in "${NODES[@]}"; do
      r="${M[$label.$i.replicas]}"
      per_fd="$(awk -v f="${M[$label.$i.fds]}" -v b="${M[base.$i.fds]:-}" -v r="$r" -v rb="${M[base.$i.replicas]:-}" \
        'BEGIN { if (b != "" && r > rb) printf "%.2f", (f - b) / (r - rb); else printf "%.2f", f / r }')"
      per_rss="-"
      if [[ "$label" != base && -n "${M[base.$i.hwm]:-}" ]]; then
        per_rss="$(awk -v h="${M[$label.$i.hwm]}" -v b="${M[base.$i.hwm]}" -v r="$r" -v rb="${M[base.$i.replicas]}" \
          'BEGIN { printf "%.1f", (h - b) / (r - rb) }')"
      fi
      printf '%-7s %4s %9s %10s %10s %10s %8s %8s %9s %10s %9s\n' "$label" "$i" "$r" \
        "$(kib "${M[$label.$i.idle_rss]}") MiB" "$(kib "${M[$label.$i.hwm]}") MiB" "$(kib "${M[$label.$i.rss]}") MiB" \
        "${M[$label.$i.idle_fds]}" "${M[$label.$i.fds]}" "$per_fd" "$per_rss" \
        "$([[ $i == 1 ]] && echo "${M[$label.produce_mbs]}" || echo "")"
    done
    sum=0; for i in "${NODES[@]}"; do sum=$(( sum + ${M[$label.$i.hwm]} )); done
    M[$label.hwm_sum]="$sum"
    echo "$label: peak RSS summed over the 3 nodes $(kib "$sum") MiB; consume ${M[$label.consume_mbs]} MiB/s overall"
  done
  echo
  echo "replicas: partition directories on the node (the benchmark topics plus internal ones)."
  echo "fds/repl: open files per replica; with a baseline run, (fds - baseline fds) / (replicas - baseline replicas)."
  echo "KiB/repl: (peak RSS - baseline peak RSS) / (replicas - baseline replicas), per node."
  echo "prod MiB/s: records produced over wall time of all producers together (JVM start-up included)."
)"
mkdir -p "$root/bench/results"
echo "$report" >"$root/bench/results/replicas-$stamp.txt"
echo "$report"
log "saved bench/results/replicas-$stamp.txt"
