#!/usr/bin/env bash
# Starts a local three-node Gregor cluster in the foreground: brokers on 127.0.0.1:9092, 9093
# and 9094, their controller listeners (the metadata quorum's voters) on 9192, 9193 and
# 9194, data and one log per node under ${GREGOR_DATA:-data/}. Ctrl-C stops them all.
# No format step: the quorum forms on first start and keeps its cluster id afterwards.
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
PROPS
  "$bin" --config "$conf" 2>>"$data/node-$id.log" &
  pids+=($!)
  echo "node $id: broker 127.0.0.1:$port, controller 127.0.0.1:$cport (log: $data/node-$id.log, pid $!)" >&2
done

echo "Gregor is running. Try: bin/kafka topics --bootstrap-server 127.0.0.1:9092 --list   (Ctrl-C stops)" >&2
# Runs until Ctrl-C; a node that dies (or is killed in a fault demo) leaves the others running.
wait "${pids[@]}"
