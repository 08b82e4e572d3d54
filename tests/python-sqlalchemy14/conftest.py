"""Fixtures for flightsql-dbapi (the SQLAlchemy 1.4 dialect Superset uses), which needs a
venv of its own: a real `domicile node` per module, started by `tests/python/domicile_node`."""

import pathlib
import sys
import tempfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))

from domicile_node import start_node, stop_node, upload_eu_policy  # noqa: E402


@pytest.fixture(scope="module")
def node():
    with tempfile.TemporaryDirectory() as folder:
        folder = pathlib.Path(folder)
        url, admin, process, log = start_node(folder)
        upload_eu_policy(folder, admin)
        yield url
        stop_node(process, log)
