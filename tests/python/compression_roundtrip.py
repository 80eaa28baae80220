"""Produces batches with each compression codec through librdkafka and reads them back.

usage: compression_roundtrip.py BOOTSTRAP
Prints "<codec>: ok" per codec; exits non-zero on any mismatch or error.
"""
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

COUNT = 2000


def main(bootstrap: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    codecs = ["gzip", "snappy", "lz4", "zstd"]
    futures = admin.create_topics([NewTopic(f"codec-{c}", num_partitions=1, replication_factor=1) for c in codecs])
    for f in futures.values():
        f.result(timeout=30)
    for codec in codecs:
        topic = f"codec-{codec}"
        producer = Producer({
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "enable.idempotence": True,
            "linger.ms": 20,
        })
        sent = [f"{codec}-{i}-".encode() + b"z" * (i % 300) for i in range(COUNT)]
        acked = {}
        errors = []

        def on_delivery(err, msg):
            if err is not None:
                errors.append(err)
            else:
                acked[msg.offset()] = msg.value()

        for i, value in enumerate(sent):
            producer.produce(topic, value=value, key=str(i).encode(), on_delivery=on_delivery)
            producer.poll(0)
        producer.flush(30)
        if errors or len(acked) != COUNT:
            print(f"{codec}: produce failed: {errors[:3]} acked={len(acked)}")
            return 1
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{codec}", "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = {}
        while len(got) < COUNT:
            msg = consumer.poll(10)
            if msg is None:
                break
            if msg.error():
                # Transient events (e.g. no group coordinator for an assign()-only consumer)
                # are reported through poll too; only fatal ones end the test.
                if msg.error().fatal():
                    print(f"{codec}: consume error {msg.error()}")
                    return 1
                continue
            got[msg.offset()] = msg.value()
        consumer.close()
        if got != acked:
            print(f"{codec}: mismatch: got {len(got)} records, expected {len(acked)}")
            return 1
        if sorted(got.values()) != sorted(sent):
            print(f"{codec}: values differ")
            return 1
        print(f"{codec}: ok ({COUNT} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
