# `make demo` and `make test` set everything up on a fresh machine from the lock alone: uv, at the
# version and hashes of requirements-uv.txt, in .tools; then .venv synced to uv.lock (the project,
# its extras and the dev group), again whenever uv.lock or a pyproject.toml changes. Nothing is
# resolved here: `uv sync --locked` refuses a uv.lock that no longer matches the ranges (after
# editing a range, `make lock`; for the newest releases, `make upgrade`).
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synced-stamp
LOWEST := .venv-lowest
LOWEST_PROBE := .venv-lowest-probe
DIST ?= dist
PROJECTS := pyproject.toml infra/probe/pyproject.toml
# pytest-xdist workers, a test file each: most tests wait on the processes they start (redis,
# the sim, gateways, nginx, Chromium), so three share two cores well. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
PYTEST_ARGS := -n $(TEST_WORKERS) --dist loadfile

# uv runs on this Python and never downloads one of its own.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never

.PHONY: venv demo lint test bench lock upgrade test-lowest dist clean

$(UV): requirements-uv.txt
	$(PYTHON) -m venv --clear $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements-uv.txt
	touch $(UV)

$(STAMP): $(UV) uv.lock $(PROJECTS)
	$(UV) sync --quiet --locked --all-extras
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/llmgw demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	PYTHONPATH=tests:tests/bench $(BIN)/python tests/bench/run.py

# uv.lock again from the ranges, keeping every version it can (after editing pyproject.toml).
lock: $(UV)
	$(UV) lock

# Every dependency, the dev tools and uv itself at its newest release, then the whole suite on
# them: one deliberate commit of uv.lock and requirements-uv.txt when it passes.
upgrade: $(UV)
	echo uv | $(UV) pip compile - --universal --generate-hashes --upgrade --quiet \
		--custom-compile-command 'make upgrade' -o requirements-uv.txt
	$(MAKE) $(UV)
	$(UV) lock --upgrade
	$(MAKE) test

# The ranges' floors: each direct dependency at the lowest version its range allows (what those
# pull in at the newest), resolved afresh into .venv-lowest; uv.lock is not touched. pytest only:
# ruff and mypy at their floors judge the code's style, not whether the ranges hold. The probe's
# own floors (infra/probe/pyproject.toml: redis-py 5.0.1, where the gateway needs 7.0) replace the
# gateway's in .venv-lowest-probe, which runs the probe's tests (they start the sim, so the
# sim's dependencies are there, at their floors too).
test-lowest: $(UV)
	$(UV) venv --quiet --clear $(LOWEST)
	$(UV) pip compile --quiet pyproject.toml --all-extras --group pyproject.toml:dev \
		--resolution lowest-direct -o $(LOWEST)/requirements.txt
	$(UV) pip sync --quiet --python $(LOWEST) $(LOWEST)/requirements.txt
	$(UV) pip install --quiet --python $(LOWEST) --no-deps -e .
	$(LOWEST)/bin/pytest $(PYTEST_ARGS)
	$(UV) venv --quiet --clear $(LOWEST_PROBE)
	$(UV) pip compile --quiet infra/probe/pyproject.toml --no-deps --resolution lowest-direct \
		-o $(LOWEST_PROBE)/floors.txt
	$(UV) pip compile --quiet pyproject.toml --all-extras --group pyproject.toml:dev \
		--resolution lowest-direct --override $(LOWEST_PROBE)/floors.txt \
		-o $(LOWEST_PROBE)/requirements.txt
	$(UV) pip sync --quiet --python $(LOWEST_PROBE) $(LOWEST_PROBE)/requirements.txt
	$(UV) pip install --quiet --python $(LOWEST_PROBE) --no-deps -e .
	$(LOWEST_PROBE)/bin/pytest $(PYTEST_ARGS) tests/probe

# The wheels a user installs (README, "Installing"): dist/llmgw-*.whl on the gateway host (app,
# sim and probe) and dist/llmgw_probe-*.whl on the model host (the probe alone, no Litestar),
# each with its dependencies at the lock's versions, hashed, in dist/*.requirements.txt.
dist: $(UV)
	rm -rf $(DIST)
	$(UV) build --quiet --wheel --out-dir $(DIST)
	$(UV) build --quiet --wheel --package llmgw-probe --out-dir $(DIST)
	$(UV) export --quiet --frozen --no-dev --no-emit-project -o $(DIST)/llmgw.requirements.txt
	$(UV) export --quiet --frozen --no-dev --package llmgw-probe --no-emit-project \
		-o $(DIST)/llmgw-probe.requirements.txt

clean:
	rm -rf $(VENV) $(TOOLS) $(LOWEST) $(LOWEST_PROBE) dist .mypy_cache .ruff_cache .pytest_cache \
		bench-report
