"""Starts real `domicile node` processes for the Python client tests: each in its own data
dir, on a port the OS picks. Shared by `tests/python` and `tests/python-sqlalchemy14`
(a venv of its own: flightsql-dbapi needs SQLAlchemy 1.4)."""

import os
import pathlib
import subprocess
import threading

import pytest

PASSWORDS = {"admin": "admin-pw", "reader": "reader-pw"}


def domicile_binary() -> str:
    binary = os.environ.get("DOMICILE_BIN")
    if not binary or not pathlib.Path(binary).exists():
        pytest.fail("DOMICILE_BIN must point at a built domicile binary")
    return binary


def hash_password(password: str) -> str:
    result = subprocess.run(
        [domicile_binary(), "hash-password"], input=password, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def wasm_dir() -> pathlib.Path:
    target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/domicile/target"))
    return pathlib.Path(os.environ.get("DOMICILE_WASM_DIR", f"{target}/wasm32-wasip2/release"))


def upload_eu_policy(folder: pathlib.Path, admin_address: str) -> None:
    """Signs the bundled EU policy with the key the node trusts and uploads it: without an
    active policy the node refuses to store regional rows."""
    subprocess.run(
        [domicile_binary(), "plugin", "upload", "--endpoint", f"http://{admin_address}", "--user", "admin",
         "--jurisdiction", "EU", "--kind", "residency-policy", "--version", "1",
         "--key", str(folder / "eu.key"), str(wasm_dir() / "eu_gdpr.wasm")],
        env={**os.environ, "DOMICILE_PASSWORD": PASSWORDS["admin"]}, capture_output=True, text=True, check=True,
    )


def start_node(folder: pathlib.Path, listen_extra: str = "", scheme: str = "grpc"):
    """Starts a node in `folder`; yields (flight URL, process). `listen_extra` goes into
    its `[listen]` table."""
    users = "".join(
        f'\n[[users]]\nname = "{name}"\npassword_hash = "{hash_password(password)}"\n'
        f'roles = ["{name}"]\nhome_region = "eu-central"\n'
        + ('compliance = ["EU"]\n' if name == "admin" else "")
        for name, password in PASSWORDS.items()
    )
    trusted = subprocess.run(
        [domicile_binary(), "plugin", "keygen", "--jurisdiction", "EU", "--out", str(folder / "eu.key")],
        capture_output=True, text=True, check=True,
    ).stdout
    (folder / "node.toml").write_text(
        'region = "eu-central"\njurisdiction = "EU"\ndata_dir = "data"\n'
        '[listen]\nflight_sql = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\n' + listen_extra +
        "[plugins]\ncall_deadline_ms = 2000\n" + users + "\n" + trusted
    )
    log = open(folder / "node.log", "w")
    process = subprocess.Popen(
        [domicile_binary(), "node", "--config", str(folder / "node.toml")],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    first_line = process.stdout.readline()
    # Keep draining stdout so the node never blocks on a full pipe.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    try:
        address = next(p.split("=", 1)[1] for p in first_line.split() if p.startswith("flight_sql="))
    except StopIteration:
        process.kill()
        pytest.fail(f"node did not start: {first_line!r}\n{(folder / 'node.log').read_text()}")
    admin = next(p.split("=", 1)[1] for p in first_line.split() if p.startswith("admin="))
    return f"{scheme}://{address}", admin, process, log


def stop_node(process, log):
    process.terminate()
    process.wait(timeout=30)
    log.close()
