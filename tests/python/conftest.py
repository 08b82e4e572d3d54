"""Fixtures for the Python client tests: a real `domicile node` per module (see
`domicile_node`)."""

import pathlib
import subprocess
import tempfile

import pytest

from domicile_node import PASSWORDS, domicile_binary, start_node, stop_node, upload_eu_policy  # noqa: F401


@pytest.fixture(scope="module")
def node():
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        url, admin, process, log = start_node(folder)
        upload_eu_policy(folder, admin)
        yield url
        stop_node(process, log)


@pytest.fixture(scope="module")
def tls_node():
    """A node whose client listeners speak TLS, with a certificate from a CA made by
    `domicile certs`; yields (grpc+tls URL, the CA's PEM text)."""
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        ca = folder / "client-ca"
        subprocess.run([domicile_binary(), "certs", "ca", "--out", str(ca)], capture_output=True, check=True)
        subprocess.run(
            [domicile_binary(), "certs", "server", "--ca-dir", str(ca), "--name", "127.0.0.1",
             "--name", "localhost", "--out", str(ca)],
            capture_output=True, check=True,
        )
        tls = f'tls = {{ cert = "{ca / "server.pem"}", key = "{ca / "server.key"}" }}\n'
        url, _, process, log = start_node(folder, tls, scheme="grpc+tls")
        yield url, (ca / "ca.pem").read_text()
        stop_node(process, log)
