#!/usr/bin/env bash
# Helpers shared by bench/run.sh and bench/cluster.sh: process bookkeeping with cleanup on
# exit, logging, running Kafka tools, probing a Kafka listener. Sourced after `work`, `keep`,
# `kafka_tool` and `tool_timeout` are set.

PIDS=()        # every background process started here; killed on exit
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ $keep -eq 1 || ( $rc -ne 0 && $rc -ne 130 && $rc -ne 143 ) ]]; then
    echo "bench: data and logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
forget_pid() {
  local pid="$1" i
  for i in "${!PIDS[@]}"; do
    if [[ "${PIDS[$i]}" == "$pid" ]]; then unset "PIDS[$i]"; fi
  done
  PIDS=("${PIDS[@]}")
}

# Runs a Kafka tool in the background (so the exit trap can stop it), waits for it, and
# returns its exit status. Output goes to the file given as first argument.
tool() {
  local out="$1"; shift
  timeout --kill-after=10 "$tool_timeout" "$kafka_tool" "$@" >"$out" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local rc=0
  wait "$pid" || rc=$?
  forget_pid "$pid"
  return "$rc"
}

# Sends an ApiVersions request (v3, as current clients do, or v0 when given "0") and succeeds
# when a response with our correlation id comes back, whatever its error code: the point is that
# the broker's Kafka listener answers. ApiVersions responses always use response header v0.
probe_api_versions() {
  local port="$1" req out
  if [[ "${2:-3}" == 0 ]]; then
    # size 11 | api_key 18 | version 0 | correlation 1 | client_id "b"
    req='\x00\x00\x00\x0b\x00\x12\x00\x00\x00\x00\x00\x01\x00\x01b'
  else
    # size 17 | api_key 18 | version 3 | correlation 1 | client_id "b" | no tags |
    # client_software_name "b" | client_software_version "1" | no tags
    req='\x00\x00\x00\x11\x00\x12\x00\x03\x00\x00\x00\x01\x00\x01b\x00\x02b\x021\x00'
  fi
  # shellcheck disable=SC2016  # the inner script takes the port and request as $1 and $2
  out="$(timeout 2 bash -c '
      exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
      printf "$2" >&3
      head -c 8 <&3 | od -An -tx1' _ "$port" "$req" 2>/dev/null)" || return 1
  out="${out//[[:space:]]/}"
  [[ ${#out} -eq 16 && "${out:8:8}" == 00000001 ]]
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_ready NAME PID PORT START_MS: polls until ApiVersions answers; prints elapsed ms.
wait_ready() {
  local name="$1" pid="$2" port="$3" start="$4" deadline=$(( $(now_ms) + 120000 ))
  while (( $(now_ms) < deadline )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name exited during start-up; last log lines:"; tail -n 30 "$work/$name.log" >&2 || true
      return 1
    fi
    if probe_api_versions "$port" 3 || probe_api_versions "$port" 0; then echo $(( $(now_ms) - start )); return 0; fi
    sleep 0.02
  done
  log "$name did not answer ApiVersions on port $port within 120 s"; tail -n 30 "$work/$name.log" >&2 || true
  return 1
}

stop_broker() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

declare -A R   # results: R[<system>.<metric>]

# consume_perf SYS BOOTSTRAP TOPIC COUNT GROUP: kafka-consumer-perf-test over COUNT records in a
# new consumer group; fills R[SYS.c.*] (records read, MB/s, records/s, fetch-phase MB/s, group
# join ms).
consume_perf() {
  local sys="$1" bootstrap="$2" topic="$3" count="$4" group="$5" out="$work/$1-consume.out"
  log "$sys: consumer-perf-test over $count records"
  if ! tool "$out" consumer-perf-test --bootstrap-server "$bootstrap" --topic "$topic" \
       --messages "$count" --timeout 30000 --group "$group"; then
    log "$sys: consumer-perf-test failed:"; tail -n 20 "$out" >&2; return 1
  fi
  # header: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
  #         rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
  local header data
  header="$(grep -E '^start.time' "$out" | tail -n 1)"
  data="$(grep -A1 -E '^start.time' "$out" | tail -n 1)"
  [[ -n "$header" && -n "$data" && "$data" != "$header" ]] || { log "$sys: no summary from consumer-perf-test:"; tail -n 20 "$out" >&2; return 1; }
  echo "$header" >&2; echo "$data" >&2
  col() { awk -F', *' -v h="$header" -v want="$1" 'BEGIN{n=split(h,H,/, */); for(i=1;i<=n;i++) if(H[i]==want) c=i} {print $c}' <<<"$data"; }
  R[$sys.c.msgs]="$(col data.consumed.in.nMsg)"
  R[$sys.c.mbs]="$(col MB.sec)"
  R[$sys.c.rps]="$(col nMsg.sec)"
  R[$sys.c.fmbs]="$(col fetch.MB.sec)"
  R[$sys.c.rebalance]="$(col rebalance.time.ms)"
  if [[ "${R[$sys.c.msgs]}" != "$count" ]]; then
    log "$sys: WARNING consumer read ${R[$sys.c.msgs]} of $count records"
  fi
}

# bench_broker SYS PID PORT START_MS: the common part once a broker process is running.
bench_broker() {
  local sys="$1" pid="$2" port="$3" start="$4" ms i
  ms="$(wait_ready "$sys" "$pid" "$port" "$start")"
  R[$sys.startup_ms]="$ms"
  log "$sys answers ApiVersions after $ms ms"

  local created=0
  for i in $(seq 1 60); do
    if tool "$work/$sys-topic.out" topics --bootstrap-server "127.0.0.1:$port" --create \
         --topic "$topic" --partitions 1 --replication-factor 1; then created=1; break; fi
    if grep -q 'already exists' "$work/$sys-topic.out"; then created=1; break; fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 1
  done
  if [[ $created -ne 1 ]]; then log "$sys: topic creation failed:"; cat "$work/$sys-topic.out" >&2; return 1; fi
  R[$sys.ready_ms]=$(( $(now_ms) - start ))
  log "$sys: topic $topic created (${R[$sys.ready_ms]} ms after process start)"

  if [[ $warmup -gt 0 ]]; then
    log "$sys: warm-up, $warmup records to $topic-warmup (not measured)"
    tool "$work/$sys-warmup-topic.out" topics --bootstrap-server "127.0.0.1:$port" --create \
      --topic "$topic-warmup" --partitions 1 --replication-factor 1 \
      || { log "$sys: warm-up topic creation failed:"; cat "$work/$sys-warmup-topic.out" >&2; return 1; }
    tool "$work/$sys-warmup.out" producer-perf-test --topic "$topic-warmup" --num-records "$warmup" \
      --record-size "$record_size" --throughput -1 \
      --producer-props "bootstrap.servers=127.0.0.1:$port" acks=1 "compression.type=${compression_type:-none}" \
      || { log "$sys: warm-up failed:"; tail -n 20 "$work/$sys-warmup.out" >&2; return 1; }
  fi

  local acks line
  for acks in 1 all; do
    log "$sys: producer-perf-test, $records x $record_size B, acks=$acks, compression.type=${compression_type:-none}"
    local out="$work/$sys-produce-acks$acks.out"
    if ! tool "$out" producer-perf-test --topic "$topic" --num-records "$records" \
         --record-size "$record_size" --throughput -1 \
         --producer-props "bootstrap.servers=127.0.0.1:$port" "acks=$acks" "compression.type=${compression_type:-none}"; then
      log "$sys: producer-perf-test failed:"; tail -n 20 "$out" >&2; return 1
    fi
    line="$(grep -E 'records sent,.*99\.9th' "$out" | tail -n 1)"
    [[ -n "$line" ]] || { log "$sys: no summary from producer-perf-test:"; tail -n 20 "$out" >&2; return 1; }
    echo "$line" >&2
    # "N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency,
    #  P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th."
    R[$sys.p$acks.rps]="$(sed -E 's/.* ([0-9.]+) records\/sec.*/\1/' <<<"$line")"
    R[$sys.p$acks.mbs]="$(sed -E 's/.*\(([0-9.]+) MB\/sec\).*/\1/' <<<"$line")"
    R[$sys.p$acks.avg]="$(sed -E 's/.* ([0-9.]+) ms avg latency.*/\1/' <<<"$line")"
    R[$sys.p$acks.max]="$(sed -E 's/.* ([0-9.]+) ms max latency.*/\1/' <<<"$line")"
    R[$sys.p$acks.p50]="$(sed -E 's/.* ([0-9.]+) ms 50th.*/\1/' <<<"$line")"
    R[$sys.p$acks.p99]="$(sed -E 's/.* ([0-9.]+) ms 99th.*/\1/' <<<"$line")"
  done

  local total=$(( 2 * records ))
  consume_perf "$sys" "127.0.0.1:$port" "$topic" "$total" "bench-$sys-$$" || return 1

  R[$sys.rss_mb]="$(awk '/^VmHWM:/ {printf "%.1f", $2/1024}' "/proc/$pid/status" 2>/dev/null || echo "?")"
  log "$sys: peak RSS ${R[$sys.rss_mb]} MiB"
}

check_port_free() {
  if port_in_use "$1"; then echo "bench: port $1 is already in use on 127.0.0.1" >&2; exit 1; fi
}
