"""Which database backends the run covers."""

import os

# Set (as `.ci/run` does when a server answers on 5432) to run every database test on
# PostgreSQL as well as SQLite.
POSTGRES_URL = os.environ.get("EDITGRAPH_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", "postgres"]
