"""Reads every message of every Domicile CDC topic with confluent-kafka (a Kafka client
no one here wrote) and validates it as a Debezium-style change event.

Usage: check_cdc_topics.py BROKERS EXPECTED_MIN FORBIDDEN...

Exit status 0 when at least EXPECTED_MIN messages were read, every one is a valid
envelope, and no FORBIDDEN string appears in any key, value or header; otherwise 1,
with what failed. Prints a JSON summary on success.
"""

import json
import sys
import uuid

from confluent_kafka import Consumer

FIRST_WAIT_S = 15.0
IDLE_S = 3.0


def fail(message):
    print(f"FAIL {message}", file=sys.stderr)
    sys.exit(1)


def read_all(brokers):
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"envelope-check-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 500,
        }
    )
    consumer.subscribe(["^domicile[.]cdc[.].*"])
    messages = []
    try:
        while True:
            message = consumer.poll(IDLE_S if messages else FIRST_WAIT_S)
            if message is None:
                break
            if message.error():
                fail(f"consumer error: {message.error()}")
            messages.append(message)
    finally:
        consumer.close()
    return messages


def check_envelope(message):
    where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
    headers = {name: value for name, value in (message.headers() or [])}
    event_id = headers.get("domicile.event_id", b"").decode()
    redactor = headers.get("domicile.redactor", b"").decode()
    region, _, seq = event_id.rpartition(":")
    if not region or not seq.isdigit():
        fail(f"{where}: header domicile.event_id is {event_id!r}")
    if redactor.count("/") != 2:
        fail(f"{where}: header domicile.redactor is {redactor!r}")
    key = json.loads(message.key())
    if not key.get("payload"):
        fail(f"{where}: key without payload")
    value = json.loads(message.value())
    payload = value.get("payload") or fail(f"{where}: no payload")
    schema = value.get("schema") or fail(f"{where}: no schema")
    op = payload.get("op")
    if op not in ("c", "u", "d"):
        fail(f"{where}: op {op!r}")
    if (op == "c") != (payload.get("before") is None):
        fail(f"{where}: op {op} with before {payload.get('before')!r}")
    if (op == "d") != (payload.get("after") is None):
        fail(f"{where}: op {op} with after present")
    source = payload.get("source") or fail(f"{where}: no source")
    for field in ("version", "connector", "name", "region", "table", "seq", "ts_ms"):
        if field not in source:
            fail(f"{where}: source.{field} missing")
    if source["region"] != region or str(source["seq"]) != seq:
        fail(f"{where}: source {source['region']}:{source['seq']} but event id {event_id}")
    if message.topic() != f"domicile.cdc.{source['region']}.{source['table']}":
        fail(f"{where}: topic does not match source {source['region']}.{source['table']}")
    if not isinstance(payload.get("ts_ms"), int):
        fail(f"{where}: ts_ms {payload.get('ts_ms')!r}")
    row = payload.get("after") or payload.get("before")
    fields = {f["field"]: f for f in schema["fields"]}
    declared = {f["field"] for f in fields["after"]["fields"]}
    if set(row) - declared:
        fail(f"{where}: row fields {sorted(set(row) - declared)} not in the schema")
    return source["region"], source["table"]


def main():
    brokers, expected_min, forbidden = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    messages = read_all(brokers)
    if len(messages) < expected_min:
        fail(f"read {len(messages)} messages, expected at least {expected_min}")
    tables = set()
    for message in messages:
        blobs = [message.key() or b"", message.value() or b""]
        blobs += [value or b"" for _, value in (message.headers() or [])]
        for text in forbidden:
            if any(text.encode() in blob for blob in blobs):
                fail(f"{message.topic()}@{message.offset()}: contains forbidden {text!r}")
        tables.add(check_envelope(message))
    print(json.dumps({"messages": len(messages), "tables": sorted(map(list, tables))}))


if __name__ == "__main__":
    main()
