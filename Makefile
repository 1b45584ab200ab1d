# Hometown developer commands. `make help` lists them.
# The two that matter most (see README): `make run` and `make test`.
SHELL := bash
.DEFAULT_GOAL := help
UV ?= uv
DB := $(UV) run python -m tools.cluster

.PHONY: help install db db-stop migrate seed model feed-model run serve test test-fast lint bench-load bench-api bench-mixed bench-memory bench-feed bench-feed-api soak

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## install the locked dependencies into .venv
	$(UV) sync --frozen

db: install ## give a PostGIS: DATABASE_URL, else docker compose, else a private cluster in .pgdata/
	@$(DB) up >/dev/null

db-standby: db ## a hot standby of the private cluster in .pgdata-standby/ (port 54330), by pg_basebackup -R
	@$(DB) standby

db-stop: ## stop the private cluster in .pgdata/ (and its standby)
	@$(DB) down

migrate: db ## alembic upgrade head
	$(UV) run alembic upgrade head

seed: migrate ## load the default synthetic dataset if the database is empty
	$(UV) run python -m seed generate --if-empty

# MODEL_PATH's default lives in app/settings.py; ask it rather than repeat it here.
HAS_MODEL := $(UV) run python -c "import sys; from app.settings import get_settings; sys.exit(not get_settings().model_path.exists())"

model: seed ## train the click model on the database unless MODEL_PATH already holds one
	@if $(HAS_MODEL); then echo "[model] a click model exists; retrain with: uv run python -m ml train"; \
	else $(UV) run python -m ml train; fi

# The feed's reranker lives beside MODEL_PATH (app/feed/ranker.py names the file).
HAS_FEED := $(UV) run python -c "import sys; from app.settings import get_settings; from app.feed.ranker import reranker_path; sys.exit(not reranker_path(get_settings().model_path).exists())"

feed-model: seed ## train the home-feed models (LightGCN, ALS, reranker) unless they exist
	@if $(HAS_FEED); then echo "[feed] home-feed models exist; retrain with: uv run python -m ml feed train"; \
	else $(UV) run python -m ml feed train; fi

run: model feed-model ## README command 1: install, database, migrate, seed, train the models, serve on :8000
	$(UV) run python -m app

serve: ## serve the API without the set-up steps
	$(UV) run python -m app

test: install ## README command 2: the whole suite against a real PostGIS
	$(UV) run pytest

test-fast: install ## the unit tests alone: no database, seconds (tests marked slow left out)
	$(UV) run pytest tests/unit -q -m "not slow"

lint: install ## ruff and mypy
	$(UV) run ruff check app seed ml tests migrations bench tools
	$(UV) run ruff format --check app seed ml tests migrations bench tools
	$(UV) run mypy

bench-load: db ## load benchmark: 1M users + 1M streams + 10M impressions vs bare COPY (scratch db)
	$(UV) run python -m bench.load --users 1000000 --streams 1000000 --impressions 10000000

bench-api: db ## HTTP benchmark: POST /v1/scenarios/hometown (wrk) vs pgbench, 1M users + 1M live streams (scratch db)
	$(UV) run python -m bench --users 1000000 --streams 1000000

bench-mixed: db ## live-status writes (2,500/s) while serving recommendations, 1M streams ~100k live (scratch db)
	$(UV) run python -m bench.mixed --users 1000000 --streams 1000000

bench-memory: model ## server RSS with the click model: python -m app against a server that loads pandas (scratch db)
	$(UV) run python -m bench.memory

soak: db ## ten minutes at 70% of capacity, reads and live-status writes mixed (scratch db)
	$(UV) run python -m bench.soak --users 1000000 --streams 1000000

bench-feed: db ## home-feed training: generate, load, train both stages, evaluate; 10K x 50K x 500K (scratch db)
	$(UV) run python -m bench.feed

bench-replicas: db-standby ## 1 and 2 processes x primary alone / + replica, HOMETOWN and home feed (run bench-feed-api first: its world and models)
	$(UV) run python -m bench.replicas --database postgresql://hometown:hometown@127.0.0.1:54329/hometown_bench_feed_api --replica postgresql://hometown:hometown@127.0.0.1:54330/hometown_bench_feed_api --model-dir models/bench_feed_api/1000000x1000000x10000000

bench-feed-api: db ## home feed over HTTP vs HOMETOWN + pgbench, 1M users x 1M streams (10% live) x 10M impressions; keeps and reuses its scratch db and models
	$(UV) run python -m bench.feed_api --users 1000000 --streams 1000000 --interactions 10000000 --reuse
