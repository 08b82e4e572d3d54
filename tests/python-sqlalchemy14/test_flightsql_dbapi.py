"""Domicile through flightsql-dbapi 0.2 (InfluxData's DB-API and SQLAlchemy 1.4 dialect,
the one Apache Superset uses for Flight SQL): statements with bound parameters and
reflection (columns with types and nullability, the primary key) from Flight SQL's
metadata commands. (pandas is installed only because the dialect imports it.)

The dialect's two optional features are switched on, as Superset's connection string
would: `feature-sqlalchemy-prepared-statements=on` (without it the dialect renders bound
values into the SQL text itself, and renders them as NULL for `text()` statements: a
client bug) and `feature-sqlalchemy-primary-keys=on` (GetPrimaryKeys)."""

import decimal

import flightsql.sqlalchemy  # noqa: F401  (registers datafusion+flightsql)
import sqlalchemy as sa


def engine_for(node, user="admin", password="admin-pw"):
    host, port = node.split("//", 1)[1].rsplit(":", 1)
    return sa.create_engine(
        f"datafusion+flightsql://{user}:{password}@{host}:{port}?insecure=true"
        "&feature-sqlalchemy-prepared-statements=on&feature-sqlalchemy-primary-keys=on"
    )


def test_statements_with_bound_parameters(node):
    engine = engine_for(node)
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE merchants (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
                "fee DECIMAL(10,2), country TEXT)"
            )
        )
        for row in ({"i": 1, "n": "Acme GmbH", "f": 1.5, "c": "DE"}, {"i": 2, "n": "it's", "f": 0.25, "c": "FR"}):
            conn.execute(sa.text("INSERT INTO merchants VALUES (:i, :n, :f, :c)"), row)
        rows = conn.execute(
            sa.text("SELECT id, name, fee FROM merchants WHERE country = :c"), {"c": "FR"}
        ).fetchall()
        assert [tuple(r) for r in rows] == [(2, "it's", decimal.Decimal("0.25"))]
        ordered = conn.execute(sa.text("SELECT id, country FROM merchants ORDER BY id")).fetchall()
        assert [tuple(r) for r in ordered] == [(1, "DE"), (2, "FR")]


def test_reflection_reads_types_nullability_and_the_primary_key(node):
    engine = engine_for(node)
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE settlements (merchant BIGINT, day DATE, amount DECIMAL(12,2) NOT NULL, "
                "note TEXT, PRIMARY KEY (merchant, day))"
            )
        )
    inspector = sa.inspect(engine)
    assert inspector.has_table("settlements") and not inspector.has_table("nothing_here")
    assert "public" in inspector.get_schema_names()
    assert "settlements" in inspector.get_table_names()
    columns = {c["name"]: c for c in inspector.get_columns("settlements")}
    assert [str(columns[name]["type"]) for name in ("merchant", "day", "amount", "note")] == [
        "BIGINT",
        "DATE",
        "DECIMAL",
        "TEXT",
    ]
    assert not columns["amount"]["nullable"] and columns["note"]["nullable"]
    assert not columns["merchant"]["nullable"]
    assert inspector.get_pk_constraint("settlements") == {
        "constrained_columns": ["merchant", "day"],
        "name": "settlements_pkey",
    }
    table = sa.Table("settlements", sa.MetaData(), autoload_with=engine)
    assert [c.name for c in table.primary_key.columns] == ["merchant", "day"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


def test_a_reader_cannot_write_and_gets_a_clear_error(node):
    engine = engine_for(node, "reader", "reader-pw")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE TABLE nope (id BIGINT PRIMARY KEY)"))
    except Exception as error:  # the dialect surfaces pyarrow's Flight error
        assert "lacks role" in str(error)
    else:
        raise AssertionError("a reader created a table")
