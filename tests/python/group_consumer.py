"""A confluent-kafka (librdkafka) consumer-group member, and the producer that feeds it.

usage:
  group_consumer.py produce BOOTSTRAP TOPIC PARTITIONS START COUNT
      Produces values "v-<i>" for i in START..START+COUNT (acks=all, idempotent), record i to
      partition i % PARTITIONS, and prints one line per acknowledged record on stdout:
      "<partition> <offset> <value>". Exits non-zero unless every record was acknowledged.

  group_consumer.py consume BOOTSTRAP TOPIC GROUP OUT ASSIGN [options]
      Joins GROUP (subscribe), polls batches of up to 100 records, appends "<partition>
      <offset> <value>" per record to OUT and flushes it, and after the batch commits the batch's offsets synchronously
      (at-least-once: a kill between the two re-delivers, never skips). Every assignment
      change is appended to ASSIGN as "<event> <unix ms> <comma-separated partitions>"
      (event: assign, revoke, lost; the partitions: the whole assignment after it). Commit failures (e.g. during a rebalance) are logged to
      stderr and polling goes on.
      --session-timeout-ms N   (default 6000)
      --stop-file PATH         close the consumer (leave the group) and exit once PATH exists
      --expect N               close and exit once N distinct records were processed and
                               committed
      --delay-ms N             sleep N ms per record while "processing" (default 0)
      --strategy NAME          partition.assignment.strategy (default range)
      --instance-id ID         group.instance.id (static membership)
      SIGTERM also closes the consumer cleanly.
"""
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


def produce(bootstrap, topic, partitions, start, count):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
    })
    acked = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked.append((msg.partition(), msg.offset(), msg.value().decode()))

    for i in range(start, start + count):
        while True:
            try:
                producer.produce(topic, value=f"v-{i}".encode(), partition=i % partitions,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(60)
    for p, o, v in acked:
        print(f"{p} {o} {v}")
    if errors or remaining or len(acked) != count:
        print(f"produce failed: errors={errors[:3]} acked={len(acked)} of {count} "
              f"unflushed={remaining}", file=sys.stderr)
        return 1
    return 0


def now_ms():
    return int(time.time() * 1000)


def consume(bootstrap, topic, group, out_path, assign_path, opts):
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    session_timeout = int(opts.get("--session-timeout-ms", "6000"))
    stop_file = opts.get("--stop-file")
    expect = int(opts["--expect"]) if "--expect" in opts else None
    delay = int(opts.get("--delay-ms", "0")) / 1000.0

    assign_log = open(assign_path, "a", buffering=1)
    out = open(out_path, "a")

    current = set()
    strategy = opts.get("--strategy", "range")
    cooperative = strategy == "cooperative-sticky"

    def log_assignment(consumer, event, partitions):
        # Eager protocols revoke everything and assign anew; cooperative ones (e.g.
        # cooperative-sticky) hand out and take back increments.
        changed = {tp.partition for tp in partitions}
        if event == "assign":
            current.update(changed) if cooperative else (current.clear(), current.update(changed))
        else:
            current.difference_update(changed) if cooperative else current.clear()
        ps = ",".join(str(p) for p in sorted(current))
        assign_log.write(f"{event} {now_ms()} {ps}\n")
        assign_log.flush()

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": f"group-consumer-{os.getpid()}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": session_timeout,
        "heartbeat.interval.ms": max(500, session_timeout // 6),
        "partition.assignment.strategy": strategy,
    }
    if "--instance-id" in opts:
        conf["group.instance.id"] = opts["--instance-id"]
    consumer = Consumer(conf)
    consumer.subscribe(
        [topic],
        on_assign=lambda c, ps: log_assignment(c, "assign", ps),
        on_revoke=lambda c, ps: log_assignment(c, "revoke", ps),
        on_lost=lambda c, ps: log_assignment(c, "lost", ps),
    )
    done = set()
    commits = 0
    commit_failures = 0
    while not stop["flag"]:
        if stop_file and os.path.exists(stop_file):
            break
        if expect is not None and len(done) >= expect:
            break
        msgs = consumer.consume(num_messages=100, timeout=0.2)
        batch = {}
        records = []
        for msg in msgs:
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"consume error: {msg.error()}", file=sys.stderr)
                continue
            if delay:
                time.sleep(delay)
            out.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
            out.flush()
            batch[msg.partition()] = max(batch.get(msg.partition(), -1), msg.offset())
            records.append((msg.partition(), msg.offset()))
        if not batch:
            continue
        # Every record of the batch is processed (written and flushed to the kernel) before
        # the commit.
        offsets = [TopicPartition(topic, p, o + 1) for p, o in sorted(batch.items())]
        try:
            result = consumer.commit(offsets=offsets, asynchronous=False)
            failed = [tp for tp in result or [] if tp.error]
            if failed:
                commit_failures += 1
                print(f"commit partly failed: {failed}", file=sys.stderr)
                continue
            commits += 1
            # Only records whose offsets are committed count as done.
            done.update(records)
        except KafkaException as e:
            commit_failures += 1
            print(f"commit failed: {e}", file=sys.stderr)
    consumer.close()
    out.close()
    print(f"closed: {commits} commits, {commit_failures} failed", file=sys.stderr)
    assign_log.close()
    return 0


def main(argv):
    if argv[1] == "produce":
        bootstrap, topic, partitions, start, count = argv[2:7]
        return produce(bootstrap, topic, int(partitions), int(start), int(count))
    if argv[1] == "consume":
        bootstrap, topic, group, out_path, assign_path = argv[2:7]
        rest = argv[7:]
        opts = dict(zip(rest[::2], rest[1::2]))
        return consume(bootstrap, topic, group, out_path, assign_path, opts)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
