#!/usr/bin/env python3
"""Records the fuzz targets' seed corpus from real client traffic.

Starts a three-node gregor cluster on its own loopback addresses with a recording TCP proxy in
front of every listener (clients, followers and Raft peers all connect through the proxies,
which the nodes advertise), drives it with the stock Kafka CLI (bin/kafka) and the
confluent-kafka (librdkafka) client, and writes what crossed the wire into fuzz/corpus/:

  request/           Kafka request frames (the bytes after the 4-byte size), a few per API
                     key and version, from the client and controller listeners
  raft_wire/         Raft RPC request and response frame bodies between the voters
  record_batch/      record batches taken from Produce requests, and runs of batches from
                     the partition logs the nodes wrote
  metadata_records/  metadata log entries (the JSON in AppendEntries), one per line: the
                     whole log in order, and each replicated run of entries
  properties/        the nodes' configuration files and meta.properties

  GREGOR_BIN=/path/to/gregor scripts/fuzz-capture.py [--out fuzz/corpus]

Everything runs on 127.0.251.0/24 and is stopped when the script ends.
"""

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST_PREFIX = "127.0.251."
RAFT_API_KEY = 0x7FFF
PRODUCE_API_KEY = 0
# Seeds kept per (api key, version), and per Raft frame kind (small frames, more of them):
# enough variety, a small corpus.
PER_KIND = 6
PER_RAFT_KIND = 24


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Recorder:
    """Collects frames from every proxy connection (thread-safe)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = defaultdict(list)  # (api key, version) -> [frame body]
        self.raft_requests = defaultdict(list)  # rpc kind -> [frame body]
        self.raft_responses = defaultdict(list)  # rpc kind -> [frame body]
        self.produce = []  # Produce frame bodies, all of them
        self.append_entries = []  # AppendEntries frame bodies, all of them, in order
        self.seen = set()

    def request(self, body):
        if len(body) < 8:
            return
        key, version = struct.unpack(">hh", body[:4])
        with self.lock:
            if key == RAFT_API_KEY:
                kind = body[8] if len(body) > 8 else -1
                if kind == 0:
                    self.append_entries.append(body)
                self._keep(self.raft_requests[kind], body, body[8:], PER_RAFT_KIND)
                return kind
            if key == PRODUCE_API_KEY:
                self.produce.append(body)
            # Frames differing only in the correlation id are the same seed.
            self._keep(self.requests[(key, version)], body, body[:4] + body[8:])
        return None

    def raft_response(self, kind, body):
        with self.lock:
            self._keep(self.raft_responses[kind], body, body[4:], PER_RAFT_KIND)

    def _keep(self, bucket, body, identity, limit=PER_KIND):
        digest = hashlib.sha1(identity).digest()
        if digest in self.seen or len(bucket) >= limit:
            return
        self.seen.add(digest)
        bucket.append(body)


async def read_frame(reader):
    size = await reader.readexactly(4)
    (n,) = struct.unpack(">i", size)
    if n < 0 or n > 64 << 20:
        raise ValueError(f"frame size {n}")
    return size, await reader.readexactly(n)


async def proxy_connection(recorder, target, client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    # Raft kinds of the requests whose responses are still to come, in order.
    pending = asyncio.Queue()

    async def upstream():
        while True:
            size, body = await read_frame(client_reader)
            await pending.put(recorder.request(body))
            server_writer.write(size + body)
            await server_writer.drain()

    async def downstream():
        while True:
            size, body = await read_frame(server_reader)
            client_writer.write(size + body)
            await client_writer.drain()
            # Raft peers use connections of their own, answered in request order (a Kafka
            # Produce with acks=0 has no response, but never travels on them).
            if not pending.empty():
                kind = pending.get_nowait()
                if kind is not None:
                    recorder.raft_response(kind, body)

    tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for w in (client_writer, server_writer):
            w.close()


def start_proxies(recorder, routes):
    """routes: [(listen (host, port), target (host, port))]; serves them on a thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    servers = []

    async def main():
        for listen, target in routes:
            servers.append(
                await asyncio.start_server(
                    lambda r, w, t=target: proxy_connection(recorder, t, r, w), *listen
                )
            )
        ready.set()
        await asyncio.Event().wait()

    # A daemon thread: the proxies go when the script exits.
    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    if not ready.wait(10):
        sys.exit("proxies did not start")


class Cluster:
    def __init__(self, gregor_bin, work):
        self.gregor_bin = gregor_bin
        self.work = work
        self.procs = []
        self.nodes = []
        for i in range(1, 4):
            host = f"{HOST_PREFIX}{10 + i}"
            self.nodes.append(
                {
                    "id": i,
                    "host": host,
                    "port": free_port(host),
                    "cport": free_port(host),
                    "proxy_port": free_port(host),
                    "proxy_cport": free_port(host),
                    "dir": work / f"node-{i}",
                }
            )
        voters = ",".join(f"{n['id']}@{n['host']}:{n['proxy_cport']}" for n in self.nodes)
        for n in self.nodes:
            n["config"] = work / f"node-{n['id']}.properties"
            n["config"].write_text(
                f"node.id={n['id']}\n"
                f"listeners=PLAINTEXT://{n['host']}:{n['port']},CONTROLLER://{n['host']}:{n['cport']}\n"
                f"advertised.listeners=PLAINTEXT://{n['host']}:{n['proxy_port']}\n"
                "controller.listener.names=CONTROLLER\n"
                f"controller.quorum.voters={voters}\n"
                f"log.dirs={n['dir']}\n"
                "num.partitions=1\n"
                "default.replication.factor=3\n"
                "offsets.topic.num.partitions=3\n"
                "broker.heartbeat.interval.ms=500\n"
                "broker.session.timeout.ms=3000\n"
                "group.initial.rebalance.delay.ms=0\n"
            )

    def routes(self):
        out = []
        for n in self.nodes:
            out.append(((n["host"], n["proxy_port"]), (n["host"], n["port"])))
            out.append(((n["host"], n["proxy_cport"]), (n["host"], n["cport"])))
        return out

    def bootstrap(self):
        return ",".join(f"{n['host']}:{n['proxy_port']}" for n in self.nodes)

    def start(self):
        for n in self.nodes:
            log = open(self.work / f"node-{n['id']}.log", "wb")
            self.procs.append(
                subprocess.Popen(
                    [self.gregor_bin, "--config", str(n["config"])],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ, GREGOR_LOG="warn"),
                )
            )

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def kafka(tool, *args, stdin=None, timeout=120, check=True):
    out = subprocess.run(
        [str(ROOT / "bin/kafka"), tool, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )
    if check and out.returncode != 0:
        sys.exit(f"kafka {tool} {args} failed:\n{out.stdout.decode()}\n{out.stderr.decode()}")
    return out.stdout.decode()


def wait_serving(bootstrap, deadline_s=90):
    end = time.time() + deadline_s
    while time.time() < end:
        out = subprocess.run(
            [str(ROOT / "bin/kafka"), "broker-api-versions", "--bootstrap-server", bootstrap],
            capture_output=True,
            timeout=60,
        )
        if out.returncode == 0 and out.stdout.count(b"(id:") >= 3:
            return
        time.sleep(1)
    sys.exit("cluster did not start serving")


LIBRDKAFKA_CLIENT = r"""
import sys
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

bootstrap = sys.argv[1]
admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic("fuzz-rdkafka", 2, 3)]).values():
    f.result()
admin.describe_configs([ConfigResource("topic", "fuzz-rdkafka")])
for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
    p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                  "enable.idempotence": True, "linger.ms": 5})
    for i in range(30):
        p.produce("fuzz-rdkafka", key=f"k{i}".encode(), value=(f"{codec}-{i}-" * 8).encode(),
                  headers=[("h", b"v")])
    assert p.flush(30) == 0
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fuzz-rdkafka-group",
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe(["fuzz-rdkafka"])
got = 0
while got < 150:
    m = c.poll(10)
    if m is None:
        break
    if m.error() is None:
        got += 1
c.commit(asynchronous=False)
c.close()
print("librdkafka consumed", got)
"""


def drive(cluster, work):
    bs = cluster.bootstrap()
    ctl = f"{cluster.nodes[0]['host']}:{cluster.nodes[0]['proxy_cport']}"
    kafka("topics", "--bootstrap-server", bs, "--create", "--topic", "fuzz-a",
          "--partitions", "3", "--replication-factor", "3")
    kafka("topics", "--bootstrap-server", bs, "--create", "--topic", "fuzz-b",
          "--partitions", "1", "--replication-factor", "3", "--config", "retention.ms=600000",
          "--config", "cleanup.policy=delete")
    kafka("topics", "--bootstrap-server", bs, "--list")
    kafka("topics", "--bootstrap-server", bs, "--describe", "--topic", "fuzz-a")
    kafka("topics", "--bootstrap-server", bs, "--alter", "--topic", "fuzz-a", "--partitions", "4")
    lines = "".join(f"key{i}:value {i}\n" for i in range(50)).encode()
    kafka("console-producer", "--bootstrap-server", bs, "--topic", "fuzz-a",
          "--property", "parse.key=true", "--property", "key.separator=:", stdin=lines)
    kafka("console-producer", "--bootstrap-server", bs, "--topic", "fuzz-b",
          "--producer-property", "acks=1", "--producer-property", "compression.type=gzip",
          stdin=lines)
    kafka("console-consumer", "--bootstrap-server", bs, "--topic", "fuzz-a", "--group", "fuzz-g",
          "--from-beginning", "--max-messages", "50", "--timeout-ms", "30000")
    kafka("consumer-groups", "--bootstrap-server", bs, "--list")
    kafka("consumer-groups", "--bootstrap-server", bs, "--describe", "--group", "fuzz-g")
    kafka("consumer-groups", "--bootstrap-server", bs, "--group", "fuzz-g", "--topic", "fuzz-a",
          "--reset-offsets", "--to-earliest", "--execute")
    kafka("configs", "--bootstrap-server", bs, "--entity-type", "topics", "--entity-name",
          "fuzz-a", "--alter", "--add-config", "retention.ms=3600000,max.message.bytes=100000")
    kafka("configs", "--bootstrap-server", bs, "--entity-type", "topics", "--entity-name",
          "fuzz-a", "--describe")
    kafka("configs", "--bootstrap-server", bs, "--entity-type", "brokers", "--entity-name", "1",
          "--describe", check=False)
    kafka("get-offsets", "--bootstrap-server", bs, "--topic", "fuzz-a")
    kafka("get-offsets", "--bootstrap-server", bs, "--topic", "fuzz-a", "--time", "-2")
    records = work / "delete-records.json"
    records.write_text(json.dumps(
        {"version": 1, "partitions": [{"topic": "fuzz-b", "partition": 0, "offset": 5}]}))
    kafka("delete-records", "--bootstrap-server", bs, "--offset-json-file", str(records))
    kafka("leader-election", "--bootstrap-server", bs, "--election-type", "preferred",
          "--all-topic-partitions", check=False)
    kafka("metadata-quorum", "--bootstrap-server", bs, "describe", "--status")
    kafka("metadata-quorum", "--bootstrap-controller", ctl, "describe", "--replication")
    kafka("cluster", "cluster-id", "--bootstrap-server", bs, check=False)
    kafka("producer-perf-test", "--topic", "fuzz-a", "--num-records", "500", "--record-size",
          "100", "--throughput", "-1", "--producer-props", f"bootstrap.servers={bs}",
          "compression.type=lz4")
    py = subprocess.run([str(ROOT / "scripts/python-env.sh")], capture_output=True, check=True)
    python = py.stdout.decode().strip()
    subprocess.run([python, "-c", LIBRDKAFKA_CLIENT, bs], check=True, timeout=180)
    kafka("topics", "--bootstrap-server", bs, "--delete", "--topic", "fuzz-b")
    time.sleep(2)


def record_batches(buf):
    """Splits concatenated v2 batches; stops at the first one that does not fit."""
    out, pos = [], 0
    while pos + 61 <= len(buf):
        (length,) = struct.unpack(">i", buf[pos + 8 : pos + 12])
        if buf[pos + 16] != 2 or length < 49 or pos + 12 + length > len(buf):
            break
        out.append(buf[pos : pos + 12 + length])
        pos += 12 + length
    return out


def batches_in_produce(body):
    """Record batches inside a Produce request: every position where a v2 batch with base
    offset 0 (as producers send them) fits."""
    out = []
    for pos in range(0, len(body) - 61):
        if body[pos + 16] != 2 or body[pos : pos + 8] != b"\0" * 8:
            continue
        (length,) = struct.unpack(">i", body[pos + 8 : pos + 12])
        if 49 <= length and pos + 12 + length <= len(body):
            out.append(body[pos : pos + 12 + length])
    return out


def metadata_entries(body):
    """The metadata records (JSON arrays) inside an AppendEntries frame, in order."""
    out, pos, decoder = [], 0, json.JSONDecoder()
    text = body.decode("latin-1")
    while True:
        pos = text.find('[{"type":', pos)
        if pos < 0:
            return out
        try:
            value, end = decoder.raw_decode(text, pos)
        except ValueError:
            pos += 1
            continue
        out.append(json.dumps(value, separators=(",", ":")))
        pos = end


def write_corpus(out, name, seeds):
    d = out / name
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    for seed in seeds:
        (d / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    size = sum(len(s) for s in seeds)
    print(f"fuzz-capture: {name}: {len(seeds)} seeds, {size} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "fuzz/corpus"))
    args = ap.parse_args()
    gregor_bin = os.environ.get("GREGOR_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "checked/gregor")
    if not os.access(gregor_bin, os.X_OK):
        sys.exit(f"no gregor binary at {gregor_bin} (set GREGOR_BIN)")
    out = Path(args.out)
    recorder = Recorder()
    with tempfile.TemporaryDirectory(prefix="gregor-fuzz-capture-") as tmp:
        work = Path(tmp)
        cluster = Cluster(gregor_bin, work)
        start_proxies(recorder, cluster.routes())
        try:
            cluster.start()
            wait_serving(cluster.bootstrap())
            drive(cluster, work)
        finally:
            cluster.stop()

        requests = [b for bucket in recorder.requests.values() for b in bucket]
        write_corpus(out, "request", requests)

        raft = [b for bucket in recorder.raft_requests.values() for b in bucket]
        raft += [b for bucket in recorder.raft_responses.values() for b in bucket]
        write_corpus(out, "raft_wire", raft)

        batches = {}
        for body in recorder.produce:
            for b in batches_in_produce(body):
                batches.setdefault(b[16 + 5 : 16 + 7], []).append(b)  # by attributes
        seeds = [b for group in batches.values() for b in group[:PER_KIND]]
        for log in sorted(work.glob("node-1/*/*.log")):
            run = record_batches(log.read_bytes()[: 32 << 10])
            if run:
                seeds.append(b"".join(run))
        write_corpus(out, "record_batch", seeds)

        entries = []
        for body in recorder.append_entries:
            entries.append([e for e in metadata_entries(body)])
        ordered, seen = [], set()
        for run in entries:
            for e in run:
                if e not in seen:
                    seen.add(e)
                    ordered.append(e)
        seeds = ["\n".join(ordered).encode()]
        runs = {"\n".join(run).encode() for run in entries if run}
        seeds += sorted(runs, key=len)[: 4 * PER_KIND]
        write_corpus(out, "metadata_records", seeds)

        props = [n["config"].read_bytes() for n in cluster.nodes]
        props += [p.read_bytes() for p in work.glob("node-*/meta.properties")]
        props.append((ROOT / "config/server.properties").read_bytes())
        write_corpus(out, "properties", props)


if __name__ == "__main__":
    main()
