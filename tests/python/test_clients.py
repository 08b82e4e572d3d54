"""Domicile with the clients people reach for, each a release nobody here wrote: ADBC bulk
ingest, pandas and polars over ADBC (write and read), SQLAlchemy 2 through sqlalchemy-adbc
(Core, ORM, reflection), and pyarrow.flight speaking the raw protocol. The README's client
compatibility table says what works with each; these tests are its evidence.
flightsql-dbapi (SQLAlchemy 1.4) has its own venv: tests/python-sqlalchemy14."""

import datetime
import decimal

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pandas as pd
import polars as pl
import polars.testing
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from domicile_node import PASSWORDS


def connect(uri, user="admin", autocommit=True):
    return flightsql.connect(
        uri, db_kwargs={"username": user, "password": PASSWORDS[user]}, autocommit=autocommit
    )


def ids(conn, table):
    with conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {table} ORDER BY id")
        return [row[0] for row in cur.fetchall()]


# ---------------------------------------------------------------------------------------
# ADBC bulk ingest


def test_adbc_ingest_modes(node):
    data = pa.table({"id": [1, 2, 3], "name": ["a", "b", None]})
    with connect(node) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("ingested", data, mode="create") == 3
        with pytest.raises(adbc_driver_manager.Error, match="already exists"):
            cur.adbc_ingest("ingested", data, mode="create")
        more = pa.table({"id": [4, 5], "name": ["d", "e"]})
        assert cur.adbc_ingest("ingested", more, mode="append") == 2
        assert ids(conn, "ingested") == [1, 2, 3, 4, 5]
        # replace: the rows are replaced, the table's definition is kept
        assert cur.adbc_ingest("ingested", more, mode="replace") == 2
        assert ids(conn, "ingested") == [4, 5]
        assert cur.adbc_ingest("ingested", data, mode="create_append") == 3
        assert ids(conn, "ingested") == [1, 2, 3, 4, 5]
        with pytest.raises(adbc_driver_manager.Error, match="does not exist"):
            cur.adbc_ingest("never_created", data, mode="append")
        # A duplicate key: nothing of the load is stored.
        with pytest.raises(adbc_driver_manager.Error):
            cur.adbc_ingest("ingested", pa.table({"id": [6, 1], "name": ["f", "x"]}), mode="append")
        assert ids(conn, "ingested") == [1, 2, 3, 4, 5]


def test_adbc_ingest_of_many_batches_is_one_commit(node):
    schema = pa.schema([("id", pa.int64()), ("amount", pa.decimal128(12, 2))])
    batches = [
        pa.record_batch(
            [pa.array(range(i * 1000, (i + 1) * 1000)), pa.array([decimal.Decimal("1.25")] * 1000, pa.decimal128(12, 2))],
            schema=schema,
        )
        for i in range(20)
    ]
    with connect(node) as conn, conn.cursor() as cur:
        reader = pa.RecordBatchReader.from_batches(schema, iter(batches))
        assert cur.adbc_ingest("bulk", reader, mode="create") == 20_000
        cur.execute("SELECT count(*), sum(amount) FROM bulk")
        assert cur.fetchone() == (20_000, decimal.Decimal("25000.00"))


# ---------------------------------------------------------------------------------------
# pandas and polars over ADBC


def test_pandas_to_sql_and_read_sql(node):
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "merchant": ["Acme GmbH", "Globex", None],
            "fee": [0.5, 1.25, 3.0],
            "settled_at": pd.to_datetime(["2026-01-01 10:00", "2026-01-02 11:30", "2026-01-03 12:45"]),
            "active": [True, False, True],
        }
    )
    # autocommit=False is the DB-API default; pandas commits after writing.
    with connect(node, autocommit=False) as conn:
        assert frame.to_sql("pd_merchants", conn, index=False) == 3
        with pytest.raises(ValueError, match="already exists"):
            frame.to_sql("pd_merchants", conn, index=False, if_exists="fail")
        frame.assign(id=frame.id + 10).to_sql("pd_merchants", conn, index=False, if_exists="append")
        back = pd.read_sql("SELECT * FROM pd_merchants WHERE id < 10 ORDER BY id", conn)
        pd.testing.assert_frame_equal(back, frame, check_dtype=False)
        assert len(pd.read_sql("SELECT id FROM pd_merchants", conn)) == 6
        # replace: pandas drops the table and creates it again from the frame.
        frame.head(1).to_sql("pd_merchants", conn, index=False, if_exists="replace")
        assert pd.read_sql("SELECT id FROM pd_merchants", conn)["id"].tolist() == [1]
        # A frame without a key column: refused with what to do.
        with pytest.raises(pd.errors.DatabaseError) as refused:
            pd.DataFrame({"code": ["x"]}).to_sql("pd_keyless", conn, index=False)
        assert "domicile.primary_key" in str(refused.value.__cause__)


def test_polars_write_database_and_read_database(node):
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3],
            "label": ["x", "y", None],
            "day": [datetime.date(2026, 1, 1), datetime.date(2026, 2, 1), datetime.date(2026, 3, 1)],
        }
    )
    with connect(node) as conn:
        assert frame.write_database("pl_items", connection=conn, engine="adbc") == 3
        frame.with_columns(pl.col("id") + 10).write_database(
            "pl_items", connection=conn, engine="adbc", if_table_exists="append"
        )
        back = pl.read_database("SELECT * FROM pl_items WHERE id < 10 ORDER BY id", connection=conn)
        pl.testing.assert_frame_equal(back, frame)
        count = pl.read_database("SELECT count(*) AS n FROM pl_items", connection=conn)
        assert count["n"].to_list() == [6]


# ---------------------------------------------------------------------------------------
# SQLAlchemy 2 through sqlalchemy-adbc


def sqlalchemy_engine(node, user="admin"):
    host, port = node.split("//", 1)[1].rsplit(":", 1)
    return sa.create_engine(
        f"adbc+flightsql://{host}:{port}?tls=false&username={user}&password={PASSWORDS[user]}"
    )


def test_sqlalchemy_core_orm_and_reflection(node):
    engine = sqlalchemy_engine(node)

    class Base(DeclarativeBase):
        pass

    class Payment(Base):
        __tablename__ = "sa_payments"
        id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
        payer: Mapped[str] = mapped_column(sa.Text)
        amount: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(12, 2))
        booked: Mapped[datetime.datetime] = mapped_column(sa.DateTime)

    Base.metadata.create_all(engine)
    Base.metadata.create_all(engine)  # again: it sees the table (has_table) and does nothing
    booked = datetime.datetime(2026, 12, 1, 9, 30)
    with Session(engine) as session:
        session.add_all(
            [
                Payment(id=1, payer="Ana", amount=decimal.Decimal("10.50"), booked=booked),
                Payment(id=2, payer="Jan", amount=decimal.Decimal("2.25"), booked=booked),
            ]
        )
        session.commit()
    with Session(engine) as session:
        rows = session.scalars(sa.select(Payment).order_by(Payment.id)).all()
        assert [(p.id, p.payer, p.amount, p.booked) for p in rows] == [
            (1, "Ana", decimal.Decimal("10.50"), booked),
            (2, "Jan", decimal.Decimal("2.25"), booked),
        ]
        rows[1].amount = decimal.Decimal("3.00")
        session.delete(rows[0])
        session.commit()
    with engine.connect() as conn:
        left = conn.execute(sa.select(Payment.id, Payment.amount)).all()
        assert left == [(2, decimal.Decimal("3.00"))]
        # Core, with bound parameters.
        total = conn.execute(
            sa.text("SELECT sum(amount) FROM sa_payments WHERE amount > :floor"), {"floor": 1}
        ).scalar()
        assert total == decimal.Decimal("3.00")

    # Reflection of a named table: column names and types. (sqlalchemy-adbc 0.3 reads
    # nullability and the primary key from ADBC get_objects fields that the ADBC Flight
    # SQL driver 1.13 does not fill; see the README's compatibility table.)
    inspector = sa.inspect(engine)
    assert inspector.has_table("sa_payments") and not inspector.has_table("sa_nothing")
    reflected = sa.Table("sa_payments", sa.MetaData(), autoload_with=engine)
    types = {column.name: type(column.type) for column in reflected.columns}
    assert types == {
        "id": sa.BigInteger,
        "payer": sa.Text,
        "amount": sa.Numeric,
        "booked": sa.DateTime,
    }


# ---------------------------------------------------------------------------------------
# pyarrow.flight: the raw protocol, Flight SQL commands encoded by hand


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A protobuf length-delimited field (wire type 2)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def enum(number, value):
    return varint(number << 3) + varint(value)


def any_command(name, body):
    """google.protobuf.Any around a Flight SQL command message."""
    return field(1, f"type.googleapis.com/arrow.flight.protocol.sql.{name}") + field(2, body)


def raw_client(node, user="admin"):
    client = flight.FlightClient(node)
    header = client.authenticate_basic_token(user, PASSWORDS[user])
    return client, flight.FlightCallOptions(headers=[header])


def test_pyarrow_flight_speaks_the_raw_protocol(node):
    client, options = raw_client(node)
    actions = {action.type for action in client.list_actions(options)}
    assert {
        "CreatePreparedStatement",
        "BeginTransaction",
        "EndTransaction",
        "CancelFlightInfo",
        "SetSessionOptions",
    } <= actions
    # What is not implemented is not advertised.
    assert not actions & {"BeginSavepoint", "EndSavepoint", "CreatePreparedSubstraitPlan"}

    query = any_command("CommandStatementQuery", field(1, "SELECT 40 + 2 AS answer"))
    info = client.get_flight_info(flight.FlightDescriptor.for_command(query), options)
    assert info.schema.names == ["answer"]
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.column("answer").to_pylist() == [42]

    # Bulk ingest with residency options a DataFrame cannot carry: CommandStatementIngest
    # (table_definition_options {if_not_exist = CREATE, if_exists = FAIL}, table,
    # options {domicile.pii = "email"}).
    ingest = any_command(
        "CommandStatementIngest",
        field(1, enum(1, 1) + enum(2, 1))
        + field(2, "raw_contacts")
        + field(1000, field(1, "domicile.pii") + field(2, "email")),
    )
    data = pa.table({"id": [1, 2], "email": ["ana@example.eu", "jan@example.eu"]})
    writer, reader = client.do_put(flight.FlightDescriptor.for_command(ingest), data.schema, options)
    writer.write_table(data)
    writer.done_writing()
    result = reader.read()
    writer.close()
    assert result is not None  # DoPutUpdateResult { record_count = 2 }
    assert b"\x08\x02" in result.to_pybytes()
    with connect(node) as conn:
        schema = conn.adbc_get_table_schema("raw_contacts")
        assert schema.field("email").metadata[b"domicile.data_class"] == b"pii"
        assert schema.field("id").metadata[b"domicile.data_class"] == b"public"
        assert ids(conn, "raw_contacts") == [1, 2]

    # Garbage where a command belongs: invalid argument (pyarrow's ArrowInvalid), and the
    # node keeps serving.
    with pytest.raises(pa.ArrowInvalid):
        client.get_flight_info(flight.FlightDescriptor.for_command(b"\xff" * 40), options)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(query), options)
    assert client.do_get(info.endpoints[0].ticket, options).read_all().num_rows == 1


def test_pyarrow_flight_cancels_a_running_query(node):
    """CancelFlightInfo (Flight's action, sent as pyarrow sends any action) stops a query
    another connection is reading: the reader gets FlightCancelledError, and the answer
    is CANCELLED (1) once the node has stopped, CANCELLING (2) before."""
    import threading
    import time

    with connect(node) as conn:
        conn.cursor().adbc_ingest(
            "spin", pa.table({"id": list(range(2000)), "v": list(range(2000))}), mode="create"
        )
    client, options = raw_client(node)
    sql = "SELECT sum(a.v + b.v + c.v) AS n FROM spin a, spin b, spin c"
    query = any_command("CommandStatementQuery", field(1, sql))
    info = client.get_flight_info(flight.FlightDescriptor.for_command(query), options)
    outcome = {}

    def read():
        reader_client, reader_options = raw_client(node)
        try:
            outcome["table"] = reader_client.do_get(info.endpoints[0].ticket, reader_options).read_all()
        except Exception as error:  # noqa: BLE001 - the kind is asserted below
            outcome["error"] = error

    thread = threading.Thread(target=read)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive(), "the query is still running"
    # CancelFlightInfoRequest { info = FlightInfo }
    body = field(1, info.serialize())
    status = None
    deadline = time.monotonic() + 10
    while status != 1 and time.monotonic() < deadline:
        results = list(client.do_action(flight.Action("CancelFlightInfo", body), options))
        # CancelFlightInfoResult { status = 1 field, varint }
        answer = results[0].body.to_pybytes()
        assert answer[:1] == b"\x08", answer
        status = answer[1]
        assert status in (1, 2), status
    assert status == 1
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), flight.FlightCancelledError), outcome
    # Another user's cancellation of a query it does not run: not found.
    reader_client, reader_options = raw_client(node, "reader")
    with pytest.raises(pa.ArrowException, match="no running query"):
        list(reader_client.do_action(flight.Action("CancelFlightInfo", body), reader_options))


def test_sqlinfo_advertises_ingest_and_transactions_truthfully(node):
    with connect(node) as conn:
        info = conn.adbc_get_info()
    assert info["vendor_name"] == "Domicile"
    client, options = raw_client(node, "reader")
    # CommandGetSqlInfo for FLIGHT_SQL_SERVER_BULK_INGESTION (10),
    # FLIGHT_SQL_SERVER_INGEST_TRANSACTIONS_SUPPORTED (11), SQL_DATA_DEFINITION_CAUSES_
    # TRANSACTION_COMMIT (565).
    body = b"".join(varint(1 << 3) + varint(code) for code in (10, 11, 565))
    command = any_command("CommandGetSqlInfo", body)
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command), options)
    rows = client.do_get(info.endpoints[0].ticket, options).read_all().to_pylist()
    values = {row["info_name"]: row["value"] for row in rows}
    assert values == {10: True, 11: True, 565: True}
