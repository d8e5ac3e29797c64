# Every target creates or updates the environment first, so a fresh clone needs nothing else.
UV      ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV    := .venv
PY      := $(VENV)/bin/python
PYTEST_WORKERS ?= 2

.PHONY: env tools fakesnow dbt-snowflake spark-env demo test test-fast lint bench clean test-dialect docs

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet "uv>=0.5"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras
	touch $@

env: $(VENV)/.synced

# The Snowflake emulator (fakesnow) in its own environment: its pins fight the project's.
FAKESNOW := .tools/fakesnow/.synced
$(FAKESNOW): fixtures/servers/fakesnow/pyproject.toml fixtures/servers/fakesnow/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/.tools/fakesnow $(UV) sync --frozen --project fixtures/servers/fakesnow
	touch $@

fakesnow: $(FAKESNOW)

# dbt-snowflake in its own environment (certifi<2025.4.26 fights the project's pins).
DBT_SNOWFLAKE := .tools/dbt-snowflake/.synced
$(DBT_SNOWFLAKE): fixtures/servers/dbt-snowflake/pyproject.toml fixtures/servers/dbt-snowflake/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/.tools/dbt-snowflake $(UV) sync --frozen --project fixtures/servers/dbt-snowflake
	touch $@

dbt-snowflake: $(DBT_SNOWFLAKE)

# The Spark Thrift Server for the tests (fixtures/spark.py): pyspark in its own environment
SPARK_ENV := .tools/spark
$(SPARK_ENV)/.synced: fixtures/servers/spark/pyproject.toml fixtures/servers/spark/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(SPARK_ENV) $(UV) sync --frozen --project fixtures/servers/spark
	touch $@

spark-env: $(SPARK_ENV)/.synced

# every server's tool environment the tests use
tools: fakesnow dbt-snowflake spark-env


# only what the demo uses: the core, the iceberg extra and the demo group (pyiceberg); no dev tools,
# no other engine's driver, no dbt environment. --inexact keeps what `make env` may have installed.
DEMO_SYNC := --extra iceberg --no-default-groups --group demo
$(VENV)/.demo-synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --inexact $(DEMO_SYNC)
	touch $@

demo: $(VENV)/.demo-synced
	$(PY) examples/demo.py

test: env tools
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup
	$(MAKE) test-dialect

test-fast: env tools
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup -m "not slow"

lint: env
	$(VENV)/bin/ruff check src tests benchmarks fixtures examples docs monitoring
	$(VENV)/bin/ruff format --check src tests benchmarks fixtures examples docs monitoring
	$(VENV)/bin/mypy --strict src
	$(VENV)/bin/lint-imports  # the layers in pyproject.toml [tool.importlinter]

# every benchmark runs even when one before it misses a target; the misses are named at the end
BENCHMARKS := run postgres_load startup cli_export asyncio_heartbeat postgres_arrow concurrency \
	short_read_cost arrow_load snowflake_bench spark spark_connect bigquery_bench
bench: env spark-env
	-$(MAKE) fakesnow  # without it the Snowflake bench says it is skipped
	@missed=""; for name in $(BENCHMARKS); do \
		echo "== benchmarks/$$name.py"; \
		$(PY) benchmarks/$$name.py || missed="$$missed $$name"; \
	done; \
	$(PY) benchmarks/plots.py; \
	if [ -n "$$missed" ]; then echo "make bench: a target missed (or the run failed) in:$$missed"; exit 1; fi

# the documentation site, into site/; --strict: a warning (a broken link, say) fails the build
docs: env
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .import_linter_cache site

# The BigQuery emulator, in its own environment (its pins fight the project's): fixtures/bigquery.py
BQEMULATOR := .tools/bqemulator/.synced
$(BQEMULATOR): fixtures/servers/bqemulator/pyproject.toml fixtures/servers/bqemulator/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/.tools/bqemulator $(UV) sync --frozen --project fixtures/servers/bqemulator
	touch $@
.tools/bqemulator: $(BQEMULATOR)
test test-fast bench: $(BQEMULATOR)

# dbt-bigquery for the dbt tests on the emulator (a large tree, kept out of the project's environment)
DBT_BIGQUERY := .tools/dbt-bigquery/.synced
$(DBT_BIGQUERY): fixtures/servers/dbt-bigquery/pyproject.toml fixtures/servers/dbt-bigquery/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/.tools/dbt-bigquery $(UV) sync --frozen --project fixtures/servers/dbt-bigquery
	touch $@
test test-fast: $(DBT_BIGQUERY)

# SQLAlchemy's dialect compliance suite for postgresql+floe_psycopg: its own pytest run and config
test-dialect: env
	$(PY) tests/dialect/run.py

# dbt-databricks for the Databricks dbt test (its dbt-adapters pin fights dbt-postgres's)
DBT_DATABRICKS := .tools/dbt-databricks/.synced
$(DBT_DATABRICKS): fixtures/servers/dbt-databricks/pyproject.toml fixtures/servers/dbt-databricks/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/.tools/dbt-databricks $(UV) sync --frozen --project fixtures/servers/dbt-databricks
	touch $@
.PHONY: dbt-databricks
dbt-databricks: $(DBT_DATABRICKS)
env test test-fast: $(DBT_DATABRICKS)
