"""Which database backends the run covers."""

import os

import pytest

# Set (as `.ci/run` does when a server answers on 5432) to run every database test on
# PostgreSQL as well as SQLite.
POSTGRES_URL = os.environ.get("EDITGRAPH_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgres"]
# For a test whose subject is what ffmpeg makes of an edit, and nothing the database does:
# it runs once, on SQLite, instead of once per backend.
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
# For a test of a PostgreSQL deployment (a cluster of servers and workers).
POSTGRES_ONLY = pytest.mark.parametrize("backend", ["postgres"])
