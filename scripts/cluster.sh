#!/usr/bin/env bash
# Starts a local three-node Gregor cluster in the foreground: brokers on 127.0.0.1:9092, 9093
# and 9094, their controller listeners (the metadata quorum's voters) on 9192, 9193 and
# 9194, data and one log per node under ${GREGOR_DATA:-data/}. Ctrl-C stops them all.
# No format step: the quorum forms on first start and keeps its cluster id afterwards.
# Once every broker is registered and unfenced it prints one line on stdout,
# "cluster ready: N brokers, bootstrap servers ...", so a script can wait for it.
#
#   GREGOR_NODES=1 scripts/cluster.sh     # a single node instead
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${GREGOR_BIN:-${CARGO_TARGET_DIR:-$root/target}/checked/gregor}"
data="${GREGOR_DATA:-$root/data}"
nodes="${GREGOR_NODES:-3}"
mkdir -p "$data"

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "cluster stopped" >&2
}
trap stop INT TERM EXIT

voters=""
for id in $(seq 1 "$nodes"); do
  voters="${voters:+$voters,}$id@127.0.0.1:$((9191 + id))"
done

for id in $(seq 1 "$nodes"); do
  port=$((9091 + id))
  cport=$((9191 + id))
  conf="$data/node-$id.properties"
  cat > "$conf" <<PROPS
node.id=$id
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
controller.quorum.voters=$voters
log.dirs=$data/node-$id
num.partitions=1
default.replication.factor=$(( nodes < 3 ? nodes : 3 ))
min.insync.replicas=$(( nodes < 3 ? 1 : 2 ))
offsets.topic.replication.factor=$(( nodes < 3 ? nodes : 3 ))
PROPS
  "$bin" --config "$conf" 2>>"$data/node-$id.log" &
  pids+=($!)
  echo "node $id: broker 127.0.0.1:$port, controller 127.0.0.1:$cport (log: $data/node-$id.log, pid $!)" >&2
done

# Live brokers in the Metadata that the broker on port $1 answers, or nothing. A broker
# accepts client connections only once it is registered and unfenced (its port is bound
# earlier), and Metadata lists only unfenced brokers. The request is Metadata v0 for all
# topics (api key 3, version 0, correlation id 1, client id "ready"); its response starts
# with the correlation id and the broker count, both int32 after the int32 size.
live_brokers() {
  local bytes b
  bytes="$(timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x13\x00\x03\x00\x00\x00\x00\x00\x01\x00\x05ready\x00\x00\x00\x00" >&3
    head -c 12 <&3 | od -An -tu1' _ "$1" 2>/dev/null)" || return 0
  read -r -a b <<<"$bytes"
  if [[ ${#b[@]} -eq 12 ]]; then echo $(( (b[8] << 24) | (b[9] << 16) | (b[10] << 8) | b[11] )); fi
}

bootstrap=""
for id in $(seq 1 "$nodes"); do bootstrap="${bootstrap:+$bootstrap,}127.0.0.1:$((9091 + id))"; done
ready_timeout_s="${GREGOR_READY_TIMEOUT_S:-120}"
deadline=$(( SECONDS + ready_timeout_s ))
while :; do
  ready=0
  for id in $(seq 1 "$nodes"); do
    [[ "$(live_brokers $((9091 + id)))" == "$nodes" ]] && ready=$(( ready + 1 ))
  done
  if [[ $ready -eq $nodes ]]; then
    echo "cluster ready: $nodes brokers, bootstrap servers $bootstrap"
    break
  fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a node exited during start-up; see $data/node-*.log" >&2; exit 1; }
  done
  if (( SECONDS >= deadline )); then
    echo "not ready after ${ready_timeout_s} s: $ready of $nodes brokers list all $nodes; see $data/node-*.log" >&2
    break
  fi
  sleep 0.2
done

echo "Try: bin/kafka topics --bootstrap-server 127.0.0.1:9092 --list   (Ctrl-C stops)" >&2
# Runs until Ctrl-C; a node that dies (or is killed in a fault demo) leaves the others running.
wait "${pids[@]}"
