"""The feed reranker at serving time: which one is loaded, or why none is.

Loaded once at start-up from `feed_reranker.bin` beside `MODEL_PATH` (where
`python -m ml feed train` writes it) and again on SIGHUP. A file that cannot be
used leaves the slot as it was and records why; the feed endpoints then answer
in their fallback order (app/feed/service.py) and say so, rather than failing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from litestar import Litestar

from app.experiments import variant_rerankers
from app.feed.artifact import FeedRanker, RankerError, load_ranker
from app.feed.features import FEATURE_NAMES
from app.reload import on_reload

log = logging.getLogger("app.feed")

#: The reranker's file name, in MODEL_PATH's directory (ml/feed/pipeline.py writes it).
RERANKER_FILE = "feed_reranker.bin"


def reranker_path(model_path: Path) -> Path:
    """Where the reranker lives for a given click-model path."""
    return Path(model_path).parent / RERANKER_FILE


@dataclass
class RankerSlot:
    """The loaded reranker (or why there is none) for the app's lifetime."""

    path: Path
    ranker: FeedRanker | None = None
    error: str | None = None
    loaded_at: datetime | None = None

    def load(self) -> bool:
        """Load the file at `path`; on failure keep the current ranker and record why."""
        try:
            ranker = load_ranker(self.path, FEATURE_NAMES)
        except RankerError as exc:
            self.error = str(exc)
            kept = " (the previous reranker stays in use)" if self.ranker else ""
            log.error("feed reranker not loaded%s: %s", kept, exc)
            return False
        self.ranker, self.error, self.loaded_at = ranker, None, datetime.now(UTC)
        log.info(
            "feed reranker loaded from %s (trained with candidate models %s)",
            self.path,
            ranker.metadata.get("candidate_models", "?"),
        )
        return True

    @property
    def version(self) -> str | None:
        """A short name for the loaded reranker: its checksum's first 12 hex digits."""
        if self.ranker is None:
            return None
        digest = str(self.ranker.metadata.get("sha256", ""))
        return f"reranker-{digest[:12]}" if digest else "reranker"


def variant_path(model_path: Path, name: str) -> Path:
    """Where an experiment variant's `feed_reranker` lives: beside MODEL_PATH unless absolute."""
    path = Path(name)
    return path if path.is_absolute() else Path(model_path).parent / path


@asynccontextmanager
async def feed_ranker(app: Litestar) -> AsyncIterator[None]:
    """Lifespan hook: load the reranker into `app.state.ranker`, reload it on SIGHUP.

    The rerankers experiment variants name (`feed_reranker`) load beside it into
    `app.state.variant_rankers`, by name; one that cannot be loaded leaves its
    variant in the fallback order, as a missing default reranker does, and says why
    in `GET /`.
    """
    settings = app.state.settings
    slot = RankerSlot(reranker_path(settings.model_path))
    variants = {
        name: RankerSlot(variant_path(settings.model_path, name))
        for name in variant_rerankers(settings.experiments)
    }
    slots = [slot, *variants.values()]
    for each in slots:
        await asyncio.to_thread(each.load)
    app.state.ranker = slot
    app.state.variant_rankers = variants
    pending: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        for each in slots:
            log.info("SIGHUP: loading the feed reranker again from %s", each.path)
            task = asyncio.ensure_future(asyncio.to_thread(each.load))
            pending.add(task)
            task.add_done_callback(pending.discard)

    on_reload(app.state, reload)
    yield
