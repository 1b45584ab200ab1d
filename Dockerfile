# Hometown API, migrations and seeding tools in one image (docker-compose.yml runs
# it as `migrate`, `seed` and `api`). Two stages: the builder resolves the locked
# dependencies with uv; the runtime gets only the virtualenv and the source.

# ---------------------------------------------------------------- builder
FROM python:3.11-slim AS builder

# The uv release the project is developed with; uv.lock is read the same way.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# Bytecode compiled once here, files copied (not hard-linked from uv's cache,
# which stays behind in this stage), and the image's own Python 3.11, never a
# downloaded one: the runtime stage has the same interpreter at the same path.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first: this layer is rebuilt only when pyproject.toml or uv.lock
# change, not on every source edit.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project

# The project is not a package (`[tool.uv] package = false`): its modules run
# from /app, so copying them is the whole install.
COPY alembic.ini ./
COPY migrations/ migrations/
COPY app/ app/
COPY seed/ seed/
COPY ml/ ml/

# ---------------------------------------------------------------- runtime
FROM python:3.11-slim AS runtime

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000

RUN groupadd --system --gid 10001 hometown \
    && useradd --system --uid 10001 --gid hometown --home-dir /app --no-create-home hometown

WORKDIR /app
COPY --from=builder /app /app
# models/ is where MODEL_PATH points in compose (a mounted volume); out/ takes
# `python -m seed explore` plots. Both must be writable by the app user.
RUN mkdir -p /app/models /app/out && chown hometown:hometown /app/models /app/out

USER hometown
EXPOSE 8000
CMD ["python", "-m", "app"]
