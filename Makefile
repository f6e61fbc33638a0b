# editgraph: `make run` and `make test` are the whole quick start.
PYTHON ?= python3
VENV   := .venv
# pytest processes for make test: one per core (each has its own Redis, database and media).
TEST_PROCESSES ?= auto
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps run cluster test lint typecheck bench schema clean

NODE_STAMP := node_modules/.package-lock.json

VENDOR_STAMP := editgraph/static/graphiql/vendor/.installed

install: system-deps $(STAMP) $(NODE_STAMP) $(VENDOR_STAMP)

# ffmpeg/ffprobe render and probe media; redis-server is the embedded default queue;
# DejaVu Sans draws the text op; npm fetches GraphiQL's assets and hls.js; Chromium runs the
# browser tests.
system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v ffprobe >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$$missing fonts-dejavu-core"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$$(echo $$missing | tr -d ' ')" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing with apt-get: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "editgraph needs these programs on PATH: $$missing"; \
	    echo "  Debian/Ubuntu (as root): apt-get install -y $$missing"; \
	    echo "  macOS (Homebrew):        brew install ffmpeg redis node (and a TrueType font)"; \
	    exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# From the npm registry, pinned by package-lock.json (none of them runs an install script):
# GraphiQL's assets, which editgraph serves once their hashes are checked (editgraph/graphiql.py),
# and hls.js for the browser tests (tests/e2e/test_hls_browser.py).
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error --ignore-scripts
	@touch $@

# Copied (and checked) again whenever node_modules or the list of assets changes, or the
# copies are gone.
$(VENDOR_STAMP): $(NODE_STAMP) editgraph/graphiql.py | $(STAMP)
	$(BIN)/python -m editgraph.graphiql install
	@touch $@

run: install
	$(BIN)/editgraph serve

# 2 servers and 3 workers on this machine over PostgreSQL (DATABASE_URL=…, or 127.0.0.1:5432),
# a private Redis and an S3 endpoint on loopback: see "Running a cluster" in the README.
cluster: install
	$(BIN)/editgraph cluster $(if $(DATABASE_URL),--database-url $(DATABASE_URL),)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/editgraph schema --check
	$(BIN)/pytest -n $(TEST_PROCESSES)

# hey drives the HTTP benchmarks from its own process (bench/append_ops.py).
bench: install
	@command -v hey >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing with apt-get: hey"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey >/dev/null; \
	  else \
	    echo "make bench needs hey on PATH (Debian/Ubuntu: apt-get install hey; macOS: brew install hey)"; \
	    exit 1; \
	  fi; }
	$(BIN)/python -m bench

schema: install
	$(BIN)/editgraph schema

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache node_modules editgraph/static/graphiql/vendor
