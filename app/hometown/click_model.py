"""The click model at serving time: which model is loaded, and P(click) for a request.

The model is trained offline (`python -m ml train`) and loaded once at start-up.
`ModelSlot` holds it; a SIGHUP makes the running server load the file again, so a
newly trained model goes live without a restart. A file that cannot be used (no
file, a damaged one, one trained on other features) leaves the slot as it was and
records why: `/hometown-ml` answers 503 with that reason until a good model loads,
and `/hometown` never depends on it.

Features come from `app.features.clicks`, the module training uses too, so serving and
training cannot compute them differently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import numpy.typing as npt
from litestar import Litestar

from app.features.artifact import ClickModel, ModelError, load
from app.features.clicks import Pairs, feature_matrix
from app.hometown.candidates import Rows
from app.hometown.scoring import FloatArray, Viewer
from app.hometown.search import Probability
from app.reload import on_reload

log = logging.getLogger("app.model")

#: The stream columns the model needs beyond those the search reads.
STREAM_FEATURES_SQL = """
SELECT stream_id, creator_followers, is_partnered, mature_content
FROM streams WHERE stream_id = ANY($1::text[])
"""


@dataclass
class ModelSlot:
    """The loaded click model (or why there is none) for the app's lifetime."""

    path: Path
    model: ClickModel | None = None
    error: str | None = None
    loaded_at: datetime | None = None

    def load(self) -> bool:
        """Load the file at `path`; on failure keep the current model and record why."""
        try:
            model = load(self.path)
        except ModelError as exc:
            self.error = str(exc)
            kept = " (the previous model stays in use)" if self.model else ""
            log.error("click model not loaded%s: %s", kept, exc)
            return False
        self.model, self.error, self.loaded_at = model, None, datetime.now(UTC)
        meta = model.metadata
        log.info(
            "click model loaded from %s: %s, trained %s on %s rows",
            self.path,
            meta.get("model_kind", "?"),
            meta.get("created_at", "?"),
            meta.get("training_rows", "?"),
        )
        return True


def probability_of(model: ClickModel) -> Probability:
    """P(click) for every candidate of a request: one query, one model call."""

    async def probability(conn: asyncpg.Connection, viewer: Viewer, rows: Rows) -> FloatArray:
        ids = rows.candidates.stream_id
        if len(ids) == 0:
            return np.empty(0, dtype=np.float64)
        found = {r["stream_id"]: r for r in await conn.fetch(STREAM_FEATURES_SQL, list(ids))}
        # A stream can vanish between the search and this read only if a reload
        # swapped the tables in between; it then counts as a small, unpartnered one.
        extra = [found.get(i) for i in ids]
        pairs = pairs_for(
            viewer,
            rows,
            creator_followers=[r["creator_followers"] if r else 0 for r in extra],
            is_partnered=[r["is_partnered"] if r else False for r in extra],
            mature_content=[r["mature_content"] if r else False for r in extra],
        )
        return model.probability(feature_matrix(pairs))

    return probability


def pairs_for(
    viewer: Viewer,
    rows: Rows,
    *,
    creator_followers: npt.ArrayLike,
    is_partnered: npt.ArrayLike,
    mature_content: npt.ArrayLike,
) -> Pairs:
    """The model's input for one viewer and the candidate rows (the evaluation uses it too)."""
    return Pairs.for_viewer(
        distance_km=rows.candidates.distance_m / 1000.0,
        user_city=viewer.city,
        user_language=viewer.language,
        user_preferred_categories=viewer.preferred_categories,
        user_local_preference=viewer.local_preference_strength,
        user_total_watch_hours=viewer.total_watch_hours,
        stream_city=rows.city,
        stream_language=rows.candidates.language,
        stream_category_id=rows.candidates.category_id,
        stream_quality_score=rows.candidates.quality,
        stream_avg_viewers=rows.candidates.avg_viewers,
        creator_followers=creator_followers,
        is_partnered=is_partnered,
        mature_content=mature_content,
    )


@asynccontextmanager
async def click_model(app: Litestar) -> AsyncIterator[None]:
    """Lifespan hook: load the model into `app.state.model`, reload it on SIGHUP."""
    slot = ModelSlot(app.state.settings.model_path)
    await asyncio.to_thread(slot.load)
    app.state.model = slot
    reloading: set[asyncio.Task[bool]] = set()

    def reload() -> None:
        log.info("SIGHUP: loading the click model again from %s", slot.path)
        task = asyncio.ensure_future(asyncio.to_thread(slot.load))
        reloading.add(task)
        task.add_done_callback(reloading.discard)

    on_reload(app.state, reload)
    yield
