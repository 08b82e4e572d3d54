"""Domicile through a Flight SQL client nobody here wrote: Python ADBC (DB-API).

DB-API over ADBC prepares every `cursor.execute`, binds parameters over DoPut and reads
SqlInfo on connect, so this exercises the server the way stock tools do."""

import datetime
import decimal

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pytest

from domicile_node import PASSWORDS


def connect(uri, user="admin", autocommit=True):
    # autocommit=True: every statement commits on its own. With autocommit=False (the
    # DB-API default) ADBC opens a Flight SQL transaction and `commit()` ends it.
    return flightsql.connect(
        uri,
        db_kwargs={"username": user, "password": PASSWORDS[user]},
        autocommit=autocommit,
    )


def test_a_transfer_with_autocommit_off_commits_whole_or_not_at_all(node):
    with connect(node) as setup, setup.cursor() as cur:
        cur.execute(
            "CREATE TABLE tx_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)"
        )
        cur.execute(
            "CREATE TABLE tx_ledger (id BIGINT PRIMARY KEY, account BIGINT NOT NULL, "
            "amount BIGINT NOT NULL) WITH (cdc = 'true')"
        )
        cur.execute("INSERT INTO tx_accounts VALUES (1, 100), (2, 0)")

    def balances(cursor):
        cursor.execute("SELECT balance FROM tx_accounts ORDER BY id")
        return [row[0] for row in cursor.fetchall()]

    with connect(node, autocommit=False) as conn, connect(node) as observer:
        cur, seen = conn.cursor(), observer.cursor()
        for finish, ledger_id in ((conn.rollback, 10), (conn.commit, 11)):
            cur.execute("UPDATE tx_accounts SET balance = balance - ? WHERE id = ?", (30, 1))
            cur.execute("INSERT INTO tx_ledger VALUES (?, 1, -30)", (ledger_id,))
            cur.execute("UPDATE tx_accounts SET balance = balance + 30 WHERE id = 2")
            assert balances(cur) == [70, 30], "the transaction sees its own writes"
            assert balances(seen) == [100, 0], "nobody else does before it commits"
            finish()
        assert balances(seen) == [70, 30]
        seen.execute("SELECT id FROM tx_ledger")
        assert seen.fetchall() == [(11,)]
        cur.close()
        seen.close()


def test_the_loser_of_a_write_conflict_gets_a_retryable_error(node):
    with connect(node) as setup, setup.cursor() as cur:
        cur.execute("CREATE TABLE tx_counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
        cur.execute("INSERT INTO tx_counter VALUES (1, 0)")
    with connect(node, autocommit=False) as a, connect(node, autocommit=False) as b:
        ca, cb = a.cursor(), b.cursor()
        for cur in (ca, cb):
            cur.execute("SELECT n FROM tx_counter WHERE id = 1")
            (n,) = cur.fetchone()
            cur.execute("UPDATE tx_counter SET n = ? WHERE id = 1", (n + 1,))
        a.commit()
        with pytest.raises(adbc_driver_manager.Error) as lost:
            b.commit()
        assert "40001" in str(lost.value), "a serialization failure, to be retried"
        ca.close()
        cb.close()
    with connect(node) as conn, conn.cursor() as cur:
        cur.execute("SELECT n FROM tx_counter WHERE id = 1")
        assert cur.fetchone() == (1,), "one increment, not two, not zero"


def test_create_insert_select_update_delete(node):
    with connect(node) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, name TEXT, "
            "balance DECIMAL(18,2) NOT NULL) "
            "WITH (locality = 'regional by row', region_column = 'region', pii = 'name')"
        )
        cur.execute(
            "INSERT INTO accounts VALUES (1, 'eu-central', 'Ana', 100.00), (2, 'eu-central', 'Ben', 50.00)"
        )
        cur.execute("INSERT INTO accounts VALUES (?, ?, ?, ?)", (3, "eu-central", "Cy", 10))

        cur.execute("SELECT id, name, balance FROM accounts WHERE id = ?", (2,))
        assert cur.fetchall() == [(2, "Ben", decimal.Decimal("50.00"))]

        cur.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (30, 1))
        cur.execute("SELECT balance FROM accounts WHERE id = 1")
        assert cur.fetchone() == (decimal.Decimal("70.00"),)

        cur.execute("DELETE FROM accounts WHERE id = ?", (3,))
        cur.execute("SELECT id FROM accounts ORDER BY id")
        assert [row[0] for row in cur.fetchall()] == [1, 2]

        cur.execute("SELECT * FROM accounts ORDER BY id")
        table = cur.fetch_arrow_table()
        assert table.num_rows == 2
        assert table.column_names == ["id", "region", "name", "balance"]


def test_executemany_binds_each_row(node):
    with connect(node) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE many (id INT PRIMARY KEY, label TEXT)")
        cur.executemany("INSERT INTO many VALUES (?, ?)", [(i, f"label-{i}") for i in range(25)])
        cur.execute("SELECT count(*), min(label), max(id) FROM many")
        assert cur.fetchone() == (25, "label-0", 24)


def test_metadata(node):
    with connect(node) as conn:
        conn.cursor().execute("CREATE TABLE IF NOT EXISTS meta_probe (k TEXT PRIMARY KEY)")
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = {
            table["table_name"]
            for catalog in objects
            for schema in catalog["catalog_db_schemas"] or []
            for table in schema["db_schema_tables"] or []
        }
        assert "meta_probe" in tables
        assert {"tables", "columns", "node"} <= tables
        assert set(conn.adbc_get_table_types()) >= {"TABLE"}
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "Domicile"
        schema = conn.adbc_get_table_schema("meta_probe")
        assert schema.names == ["k"]


def test_tls_with_the_nodes_ca_and_nothing_else(tls_node):
    """Issue 21: a stock client over grpc+tls://, trusting the CA that issued the node's
    certificate; without that CA the same client refuses the node."""
    url, ca_pem = tls_node
    with flightsql.connect(
        url,
        db_kwargs={
            "username": "admin",
            "password": PASSWORDS["admin"],
            "adbc.flight.sql.client_option.tls_root_certs": ca_pem,
        },
        autocommit=True,
    ) as conn, conn.cursor() as cur:
        cur.execute("SELECT 40 + 2 AS answer")
        assert cur.fetchall() == [(42,)]
    with pytest.raises(adbc_driver_manager.Error) as error:
        with flightsql.connect(
            url, db_kwargs={"username": "admin", "password": PASSWORDS["admin"]}, autocommit=True
        ) as conn:
            conn.cursor().execute("SELECT 1")
    assert "certificate" in str(error.value).lower(), str(error.value)
    # Plaintext to the TLS listener gets nothing.
    with pytest.raises(adbc_driver_manager.Error):
        with flightsql.connect(
            url.replace("grpc+tls://", "grpc://"),
            db_kwargs={"username": "admin", "password": PASSWORDS["admin"]},
            autocommit=True,
        ) as conn:
            conn.cursor().execute("SELECT 1")


def test_wrong_password_is_refused(node):
    with pytest.raises(adbc_driver_manager.Error) as error:
        with flightsql.connect(
            node, db_kwargs={"username": "admin", "password": "wrong"}, autocommit=True
        ) as conn:
            conn.cursor().execute("SELECT 1")
    assert "invalid user name or password" in str(error.value) or "Unauthenticated" in str(error.value)


def test_bad_sql_and_roles_give_clear_errors_and_the_node_keeps_serving(node):
    with connect(node) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError) as error:
            cur.execute("SELEC 1")
        assert "parse" in str(error.value).lower()
        with pytest.raises(adbc_driver_manager.Error) as error:
            cur.execute("SELECT * FROM no_such_table")
        assert "no_such_table" in str(error.value)
    with connect(node, "reader") as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as error:
            cur.execute("CREATE TABLE nope (id INT PRIMARY KEY)")
        assert "lacks role admin" in str(error.value)
        cur.execute("SELECT 41 + 1")
        assert cur.fetchone() == (42,)


def test_session_options_and_mesh_tables(node):
    """DB-API prepares every statement, SET included; a mesh table on a node without peers
    answers for its own region."""
    with connect(node) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE shops (id BIGINT PRIMARY KEY, region TEXT NOT NULL, volume BIGINT NOT NULL) "
            "WITH (locality = 'regional by row', region_column = 'region')"
        )
        cur.execute("INSERT INTO shops VALUES (1, 'eu-central', 10), (2, 'eu-central', 32)")
        cur.execute("SET domicile.mesh_partial_results = true")
        cur.execute("SELECT mesh_region, count(*), sum(volume) FROM mesh.shops GROUP BY mesh_region")
        assert cur.fetchall() == [("eu-central", 2, 42)]
        with pytest.raises(adbc_driver_manager.Error, match="true or false"):
            cur.execute("SET domicile.mesh_partial_results = perhaps")
        with pytest.raises(adbc_driver_manager.Error, match="unknown session option"):
            cur.execute("SET search_path = public")
        # Money literals are exact decimals.
        cur.execute("SELECT 0.10 + 0.20 AS total")
        assert cur.fetchone() == (decimal.Decimal("0.30"),)


def test_parameters_compare_numerically_and_round_on_assignment(node):
    """Issue 20, reproduction 1: a bound float or decimal is not truncated to the
    column's type. Expected answers are PostgreSQL 15's for the same statements."""
    with connect(node) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, n INT, d DECIMAL(10,2))")
        cur.execute("INSERT INTO t VALUES (1, 1, 1.00), (2, 2, 2.00)")
        for sql in ("SELECT id FROM t WHERE id = ?", "SELECT id FROM t WHERE id + 0 = ?"):
            for bound, expected in (
                (1.5, []),
                (decimal.Decimal("1.9"), []),
                (1.0, [1]),
                (decimal.Decimal("2.00"), [2]),
                (1, [1]),
            ):
                cur.execute(sql, (bound,))
                assert [row[0] for row in cur.fetchall()] == expected, (sql, bound)
        cur.execute("SELECT id FROM t WHERE id < ? ORDER BY id", (1.5,))
        assert cur.fetchall() == [(1,)]
        cur.execute("SELECT id FROM t WHERE n = ?", (3_000_000_000,))
        assert cur.fetchall() == []

        # Assignment rounds (float8 ties to even, numeric away from zero); overflow and
        # lossy text are refused and store nothing.
        cur.execute("INSERT INTO t VALUES (?, ?, ?)", (7, 7.9, decimal.Decimal("1.005")))
        cur.execute("INSERT INTO t VALUES (8, 2.5, 0)")
        cur.execute("INSERT INTO t VALUES (?, ?, 0)", (9, 2.5))
        cur.execute("UPDATE t SET n = ? WHERE id = 1", (decimal.Decimal("-2.5"),))
        cur.execute("SELECT id, n, d FROM t WHERE id IN (1, 7, 8, 9) ORDER BY id")
        assert cur.fetchall() == [
            (1, -3, decimal.Decimal("1.00")),
            (7, 8, decimal.Decimal("1.01")),
            (8, 3, decimal.Decimal("0.00")),
            (9, 2, decimal.Decimal("0.00")),
        ]
        for statement, params in (
            ("INSERT INTO t VALUES (?, ?, 0)", (10, 3_000_000_000)),
            ("INSERT INTO t VALUES (?, ?, 0)", (11, "7.9")),
            ("UPDATE t SET n = ? WHERE id = 2", (2.0e10,)),
        ):
            with pytest.raises(adbc_driver_manager.Error):
                cur.execute(statement, params)
        cur.execute("SELECT count(*) FROM t WHERE id IN (10, 11)")
        assert cur.fetchone() == (0,)
        cur.execute("SELECT n FROM t WHERE id = 2")
        assert cur.fetchone() == (2,)


def test_parameters_of_every_type_compare_and_assign_as_in_postgresql(node):
    """Issue 20, item 2, for the other types Domicile offers. Expected answers are
    PostgreSQL 15's for the same statements, with text parameters sent untyped (as
    psycopg does): a text is read as the other side's type; values of two other kinds
    (a number and a text, a boolean and a number) do not compare."""
    key = "0e5f6a2c-1d2b-4c3d-8e9f-0a1b2c3d4e5f"
    with connect(node) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE typed (id BIGINT PRIMARY KEY, day DATE, at TIMESTAMP, s TEXT, "
            "flag BOOLEAN, u UUID, raw BYTEA)"
        )
        cur.execute(
            f"INSERT INTO typed VALUES (1, DATE '2024-02-29', TIMESTAMP '2024-02-29 12:00:00', "
            f"'5', true, '{key}', X'00ff')"
        )
        noon = datetime.datetime(2024, 2, 29, 12, 0)
        plus_one = datetime.timezone(datetime.timedelta(hours=1))
        for sql, bound, expected in (
            ("SELECT id FROM typed WHERE day = ?", datetime.date(2024, 2, 29), [1]),
            # A date compares with a timestamp as its midnight.
            ("SELECT id FROM typed WHERE day = ?", noon, []),
            ("SELECT id FROM typed WHERE day < ?", noon, [1]),
            ("SELECT id FROM typed WHERE day = ?", "2024-02-29", [1]),
            ("SELECT id FROM typed WHERE at = ?", noon, [1]),
            ("SELECT id FROM typed WHERE at = ?", datetime.datetime(2024, 2, 29, 13, 0, tzinfo=plus_one), [1]),
            ("SELECT id FROM typed WHERE at > ?", datetime.date(2024, 2, 29), [1]),
            ("SELECT id FROM typed WHERE at = ?", "2024-02-29 12:00:00", [1]),
            ("SELECT id FROM typed WHERE s = ?", "5", [1]),
            ("SELECT id FROM typed WHERE flag = ?", True, [1]),
            ("SELECT id FROM typed WHERE flag = ?", "t", [1]),
            ("SELECT id FROM typed WHERE u = ?", key, [1]),
            ("SELECT id FROM typed WHERE u = ?", key.upper().replace("-", ""), [1]),
            ("SELECT id FROM typed WHERE u = ?", "{" + key + "}", [1]),
            ("SELECT id FROM typed WHERE raw = ?", b"\x00\xff", [1]),
            ("SELECT id FROM typed WHERE id = ?", "1", [1]),
            ("SELECT id FROM typed WHERE id = ?", "01", [1]),
        ):
            cur.execute(sql, (bound,))
            assert [row[0] for row in cur.fetchall()] == expected, (sql, bound)
        # The same with literals in the statement text.
        cur.execute(f"SELECT id FROM typed WHERE u = '{key.upper()}' AND id = '1' AND flag = 'yes'")
        assert cur.fetchall() == [(1,)]
        for sql, bound in (
            ("SELECT id FROM typed WHERE s = ?", 5),
            ("SELECT id FROM typed WHERE flag = ?", 1),
            ("SELECT id FROM typed WHERE id = ?", True),
            ("SELECT id FROM typed WHERE id = ?", "1.5"),
            ("SELECT id FROM typed WHERE u = ?", "not-a-uuid"),
            ("SELECT id FROM typed WHERE day = ?", 20240229),
            ("SELECT id FROM typed WHERE s = 5", None),
        ):
            with pytest.raises(adbc_driver_manager.Error):
                cur.execute(sql, () if bound is None else (bound,))
                cur.fetchall()

        # Assignment: a timestamp stored into a DATE keeps the date, a date into a
        # TIMESTAMP is its midnight, a zoned timestamp is stored in UTC, a number into
        # a TEXT is its text, a UUID is stored canonical; a text that is no value of
        # the column's type is refused and stores nothing.
        for statement, params in (
            ("INSERT INTO typed (id, day) VALUES (?, ?)", (10, datetime.datetime(2024, 3, 1, 23, 59))),
            ("INSERT INTO typed (id, at) VALUES (?, ?)", (11, datetime.date(2024, 3, 1))),
            ("INSERT INTO typed (id, at) VALUES (?, ?)",
             (12, datetime.datetime(2024, 3, 1, 1, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2))))),
            ("INSERT INTO typed (id, s) VALUES (?, ?)", (13, 42)),
            ("INSERT INTO typed (id, flag) VALUES (?, ?)", (14, "yes")),
            ("INSERT INTO typed (id, u) VALUES (?, ?)", (15, key.upper())),
            ("INSERT INTO typed (id, day) VALUES (?, ?)", (16, "2024-03-01")),
        ):
            cur.execute(statement, params)
        cur.execute("SELECT id, day, at, s, flag, u FROM typed WHERE id >= 10 ORDER BY id")
        assert cur.fetchall() == [
            (10, datetime.date(2024, 3, 1), None, None, None, None),
            (11, None, datetime.datetime(2024, 3, 1, 0, 0), None, None, None),
            (12, None, datetime.datetime(2024, 2, 29, 23, 0), None, None, None),
            (13, None, None, "42", None, None),
            (14, None, None, None, True, None),
            (15, None, None, None, None, key),
            (16, datetime.date(2024, 3, 1), None, None, None, None),
        ]
        for statement, params in (
            ("INSERT INTO typed (id, flag) VALUES (?, ?)", (20, "maybe")),
            ("INSERT INTO typed (id, u) VALUES (?, ?)", (21, "not-a-uuid")),
            ("INSERT INTO typed (id, day) VALUES (?, ?)", (22, "2024-02-30")),
        ):
            with pytest.raises(adbc_driver_manager.Error):
                cur.execute(statement, params)
        cur.execute("SELECT count(*) FROM typed WHERE id >= 20")
        assert cur.fetchone() == (0,)


def test_rowcount_is_the_number_of_rows_a_write_changed(node):
    """DB-API `rowcount`: the rows an INSERT, UPDATE or DELETE changed, prepared or not,
    with or without parameters; -1 (unknown) for a query, as PEP 249 allows."""
    with connect(node) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE counted (id INT PRIMARY KEY, v INT)")
        cur.execute("INSERT INTO counted VALUES (1, 10), (2, 20), (3, 30)")
        assert cur.rowcount == 3
        cur.execute("UPDATE counted SET v = v + 1 WHERE id >= ?", (2,))
        assert cur.rowcount == 2
        cur.execute("DELETE FROM counted WHERE id = 42")
        assert cur.rowcount == 0
        cur.execute("DELETE FROM counted WHERE id = ?", (1,))
        assert cur.rowcount == 1
        cur.executemany("INSERT INTO counted VALUES (?, ?)", [(4, 40), (5, 50)])
        assert cur.rowcount == 2
        cur.execute("SELECT id FROM counted ORDER BY id")
        assert cur.rowcount == -1
        assert [row[0] for row in cur.fetchall()] == [2, 3, 4, 5]


def test_the_announced_schema_is_the_one_sent_when_parameters_type_the_result(node):
    """A placeholder the statement alone does not type takes the bound value's type, in
    the schema GetFlightInfo announces as in the rows DoGet sends (ADBC refuses a
    stream whose schema differs: "endpoint 0 returned inconsistent schema")."""
    with connect(node) as conn, conn.cursor() as cur:
        cur.execute("SELECT ? AS x", (5,))
        assert cur.fetchall() == [(5,)]
        cur.execute("SELECT CAST(? AS TEXT) AS t, ? AS n", ("a", 2.5))
        assert cur.fetchall() == [("a", 2.5)]
        cur.execute("SELECT ? + 1 AS y", (2,))
        assert cur.fetchall() == [(3,)]
        cur.execute("SELECT ? AS s", ("text",))
        assert cur.fetchall() == [("text",)]
        assert [column[0] for column in cur.description] == ["s"]


def conn_schema(node, table):
    with connect(node) as conn:
        return conn.adbc_get_table_schema(table)


def test_get_objects_reports_column_types_nullability_and_size(node):
    with connect(node) as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE described (id BIGINT PRIMARY KEY, amount DECIMAL(12,3) NOT NULL, "
            "note TEXT, at TIMESTAMP)"
        )
        objects = conn.adbc_get_objects(depth="columns", table_name_filter="described")
        catalogs = objects.read_all().to_pylist()
    tables = [
        table
        for catalog in catalogs
        for schema in catalog["catalog_db_schemas"] or []
        for table in schema["db_schema_tables"] or []
        if table["table_name"] == "described"
    ]
    assert len(tables) == 1
    columns = {c["column_name"]: c for c in tables[0]["table_columns"]}
    assert columns["id"]["xdbc_type_name"] == "BIGINT"
    assert columns["amount"]["xdbc_type_name"] == "DECIMAL"
    assert columns["amount"]["xdbc_is_autoincrement"] is False
    # ADBC's Flight SQL driver (1.13) fills only these xdbc_* fields from a table's
    # column metadata; precision, scale and nullability are read from the schema.
    schema = conn_schema(node, "described")
    amount = schema.field("amount")
    assert not amount.nullable and schema.field("note").nullable
    assert amount.metadata[b"ARROW:FLIGHT:SQL:PRECISION"] == b"12"
    assert amount.metadata[b"ARROW:FLIGHT:SQL:SCALE"] == b"3"
    assert schema.field("at").metadata[b"ARROW:FLIGHT:SQL:TYPE_NAME"] == b"TIMESTAMP"
    assert [c["ordinal_position"] for c in tables[0]["table_columns"]] == [1, 2, 3, 4]


def test_session_options_are_what_set_changes(node):
    flag = "adbc.flight.sql.session.optionbool.domicile.mesh_partial_results"
    with connect(node) as conn:
        raw = conn.adbc_connection
        assert raw.get_option(flag) == "false"
        raw.set_options(**{flag: "true"})
        assert raw.get_option(flag) == "true"
        with conn.cursor() as cur:
            cur.execute("SET domicile.mesh_partial_results = false")
        assert raw.get_option(flag) == "false", "SetSessionOptions and SET share the session"
        with pytest.raises(adbc_driver_manager.Error):
            raw.set_options(**{"adbc.flight.sql.session.option.search_path": "x"})


def test_closing_a_connection_ends_its_transaction(node):
    # Each autocommit=False connection holds a transaction; a user may hold 64. Closing
    # the connection (Flight CloseSession) must end it, not leave it to the idle timeout.
    for _ in range(70):
        with connect(node, "reader", autocommit=False) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()
