#!/usr/bin/env bash
# Starts a local Gregor node on 127.0.0.1:9092 with its data under ${GREGOR_DATA:-data/},
# logging to data/node-1.log, in the foreground. Ctrl-C stops it cleanly.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${GREGOR_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/gregor}"
data="${GREGOR_DATA:-$root/data}"
mkdir -p "$data"

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "cluster stopped" >&2
}
trap stop INT TERM EXIT

start_node() {
  local id=$1 port=$2
  local conf="$data/node-$id.properties"
  cat > "$conf" <<PROPS
node.id=$id
listeners=PLAINTEXT://127.0.0.1:$port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
log.dirs=$data/node-$id
num.partitions=1
PROPS
  "$bin" --config "$conf" 2>>"$data/node-$id.log" &
  pids+=($!)
  echo "node $id: 127.0.0.1:$port (log: $data/node-$id.log, pid $!)" >&2
}

start_node 1 9092
echo "Gregor is running. Try: bin/kafka topics --bootstrap-server 127.0.0.1:9092 --list   (Ctrl-C stops)" >&2
wait -n "${pids[@]}"
