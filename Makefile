# Every target creates or updates the environment first, so a fresh clone needs nothing else.
UV      ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV    := .venv
PY      := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: env demo test test-fast lint bench clean test-dialect docs spark-env

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv>=0.5"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	touch $@

env: $(VENV)/.synced

# The Spark Thrift Server for the tests (fixtures/spark.py): pyspark in its own environment
SPARK_ENV := .tools/spark
$(SPARK_ENV)/.synced: fixtures/servers/spark/pyproject.toml fixtures/servers/spark/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(SPARK_ENV) $(UV) sync --frozen --project fixtures/servers/spark
	touch $@

spark-env: $(SPARK_ENV)/.synced

demo: env
	$(PY) examples/demo.py

test: env spark-env
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup
	$(MAKE) test-dialect

test-fast: env spark-env
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"

lint: env
	$(VENV)/bin/ruff check src tests benchmarks fixtures examples docs
	$(VENV)/bin/ruff format --check src tests benchmarks fixtures examples docs
	$(VENV)/bin/mypy --strict src

bench: env spark-env
	$(PY) benchmarks/run.py
	$(PY) benchmarks/postgres_load.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/postgres_arrow.py
	$(PY) benchmarks/spark.py

# the documentation site, into site/; --strict: a warning (a broken link, say) fails the build
docs: env
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache site

# SQLAlchemy's dialect compliance suite for postgresql+floe_psycopg: its own pytest run and config
test-dialect: env
	$(PY) tests/dialect/run.py
