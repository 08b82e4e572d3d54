"""Writes forged and broken change messages to a region's CDC topic, as anyone with
write access to the broker could: each is a real message of the topic, changed in one
way. Used by tests/cdc_kafka.rs to check that replica consumers quarantine them and keep
replicating.

usage: forge_cdc_messages.py BROKERS SOURCE_REGION TABLE OTHER_REGION
"""

import copy
import json
import sys
import uuid

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

U64_MAX = 2**64 - 1


def first_message(brokers, topic):
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"forge-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    try:
        for _ in range(300):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                return message
    finally:
        consumer.close()
    raise SystemExit(f"no message on {topic}")


def main():
    brokers, source, table, other = sys.argv[1:5]
    topic = f"domicile.cdc.{source}.{table}"
    real = first_message(brokers, topic)
    headers = real.headers() or []
    key = real.key()
    value = json.loads(real.value())
    seq = value["payload"]["source"]["seq"]

    def variant(change):
        forged = copy.deepcopy(value)
        change(forged)
        return json.dumps(forged).encode()

    def set_seq(forged, new):
        forged["payload"]["source"]["seq"] = new

    def other_region(forged):
        forged["payload"]["source"]["region"] = other
        set_seq(forged, seq + 1)

    def bad_decimal(forged):
        set_seq(forged, seq + 2)
        for part in forged["schema"]["fields"]:
            if part.get("field") == "after":
                part["fields"].append(
                    {
                        "type": "string",
                        "optional": True,
                        "field": "fee",
                        "name": "domicile.Decimal",
                        "parameters": {"precision": "200", "scale": "2"},
                    }
                )
        forged["payload"]["after"]["fee"] = "1.00"

    def unknown_region(forged):
        forged["payload"]["source"]["region"] = "xx-evil"

    evil = f"domicile.cdc.xx-evil.{table}"
    messages = [
        (topic, variant(lambda f: set_seq(f, U64_MAX))),
        (topic, variant(other_region)),
        (topic, variant(bad_decimal)),
        (topic, b"\xff not an envelope"),
        (evil, variant(unknown_region)),
    ]
    admin = AdminClient({"bootstrap.servers": brokers})
    created = admin.create_topics(
        [NewTopic(evil, num_partitions=1, replication_factor=1)]
    )
    for future in created.values():
        try:
            future.result(30)
        except KafkaException as error:
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    errors = []
    producer = Producer({"bootstrap.servers": brokers})
    for target, payload in messages:
        producer.produce(
            target,
            key=key,
            value=payload,
            headers=headers,
            on_delivery=lambda err, msg: errors.append(err),
        )
    assert producer.flush(30) == 0, "undelivered messages"
    assert errors == [None] * len(messages), errors


if __name__ == "__main__":
    main()
