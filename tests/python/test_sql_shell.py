"""`domicile sql` on a real terminal (a pseudo-terminal driven by pexpect), as a person
uses it: the password asked for and not echoed, line editing and history (Up recalls
the last statement, kept across sessions), psql-style `\\d` and `\\timing`, statements
split by the SQL tokenizer."""

import csv
import io
import json
import os
import pathlib
import subprocess

import pexpect

from domicile_node import PASSWORDS, domicile_binary

UP = "\x1b[A"


def shell(node, history: pathlib.Path) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if k != "DOMICILE_PASSWORD"}
    env["DOMICILE_HISTORY"] = str(history)
    env["TERM"] = "xterm"
    child = pexpect.spawn(
        domicile_binary(), ["sql", "--endpoint", node, "--user", "admin"],
        env=env, encoding="utf-8", timeout=30, dimensions=(40, 200),
    )
    child.expect_exact("Password for admin: ")
    child.sendline(PASSWORDS["admin"])
    child.expect_exact("domicile> ")
    return child


def test_the_shell_asks_for_the_password_edits_lines_and_keeps_history(node, tmp_path):
    history = tmp_path / "history"
    child = shell(node, history)
    # The password was not echoed.
    assert PASSWORDS["admin"] not in child.before
    # A comment holding a semicolon does not end the statement.
    child.sendline("SELECT 41 + 1 /* a; b */ AS answer;")
    child.expect(r"\| 42 +\|")
    child.expect(r"\(1 row, [0-9.]+ ms\)")
    child.expect_exact("domicile> ")
    # Up recalls it; Backspace and typing edit it before it runs again.
    child.send(UP)
    child.send("\x7f")  # Backspace: the ';'
    child.sendline(", 7 AS seven;")
    child.expect(r"\| answer +\| seven +\|")
    child.expect(r"\| 42 +\| 7 +\|")
    child.expect_exact("domicile> ")
    # A statement over two lines; the second prompt says it continues.
    child.sendline("SELECT 'x;y'")
    child.expect_exact("... ")
    child.sendline("AS s;")
    child.expect(r"\| x;y +\|")
    child.expect_exact("domicile> ")
    # \timing hides the times; \d lists tables with their locality.
    child.sendline("\\timing")
    child.expect_exact("Timing is off.")
    child.sendline(
        "CREATE TABLE shell_accounts (id BIGINT PRIMARY KEY, region TEXT NOT NULL, email TEXT) "
        "WITH (locality = 'regional by row', region_column = 'region', pii = 'email');"
    )
    child.expect_exact("OK\r\n")
    child.sendline("\\d shell_accounts")
    child.expect(r"REGIONAL BY ROW")
    child.expect(r"\| email +\| \w+ +\| true +\| pii +\| false")
    child.sendline("\\q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before

    # History is kept across sessions.
    kept = history.read_text()
    assert "SELECT 41 + 1 /* a; b */ AS answer, 7 AS seven;" in kept
    child = shell(node, history)
    child.send(UP)
    child.send(UP)
    child.sendline("")
    child.expect(r"\| email +\|")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)


def test_without_a_terminal_nothing_is_asked(node):
    env = {k: v for k, v in os.environ.items() if k != "DOMICILE_PASSWORD"}
    done = subprocess.run(
        [domicile_binary(), "sql", "--endpoint", node, "--user", "admin", "-e", "SELECT 1"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode != 0
    assert "no password: pass --password-file FILE or set DOMICILE_PASSWORD" in done.stderr


def run_sql(node, *args):
    env = {**os.environ, "DOMICILE_PASSWORD": PASSWORDS["admin"]}
    return subprocess.run(
        [domicile_binary(), "sql", "--endpoint", node, "--user", "admin", *args],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )


def test_results_as_csv_and_json_keep_stdout_for_data(node):
    query = "SELECT 1 AS n, 'a,\"b\"' AS s UNION ALL SELECT 2, NULL ORDER BY n"
    done = run_sql(node, "--format", "csv", "-e", query)
    assert done.returncode == 0, done.stderr
    assert list(csv.reader(io.StringIO(done.stdout))) == [["n", "s"], ["1", 'a,"b"'], ["2", ""]]
    assert "(2 rows" in done.stderr
    done = run_sql(node, "--format", "json", "-e", query)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"n": 1, "s": 'a,"b"'}, {"n": 2}]
    # An error goes to stderr and fails the command; stdout stays parseable (empty).
    done = run_sql(node, "--format", "json", "-e", "SELECT * FROM no_such_table")
    assert done.returncode != 0
    assert done.stdout == "" and "ERROR:" in done.stderr
