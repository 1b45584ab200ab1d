"""One user's basic and ML lists side by side, exactly as the API computes them.

`python -m ml compare --user USER_ID` calls `app.hometown.service.recommend`
twice with the same `service.Query` (with `explain`): once without a
probability, which is `/v1/scenarios/hometown`, and once with
`probability_of(model)`, which is `/v1/scenarios/hometown-ml`. Nothing is
re-implemented here, so what it shows is what the endpoints answer; the
integration test checks the ML side against the endpoint.

Each side shows the ring (the list is ring 0, the radius, best first, then
each widened ring's best), the score and its parts (`score = proximity + base + ml`, where
`ml` is the model's term, `weight · min(P(click), cap)`: app/hometown/ml_term.py), the
distance, city and title; the ML side also says where each stream stood in the basic
list (`=`, `↑2`, `↓1`, `new`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg

from app.features import artifact
from app.features.artifact import ClickModel
from app.hometown import service
from app.hometown.click_model import probability_of
from app.hometown.ml_term import MLTerm
from app.hometown.scoring import Viewer
from app.hometown.weights import Weights

TITLE_WIDTH = 20
#: Between the two lists: not "|", which titles may contain.
SEPARATOR = " │ "
CITY_WIDTH = 12


@dataclass
class Comparison:
    """Both answers for one request, the viewer and the model used."""

    request: service.Query
    viewer: Viewer
    basic: service.Recommendation
    ml: service.Recommendation
    model: ClickModel


async def compare(
    database_url: str,
    model: ClickModel,
    request: service.Query,
    weights: Weights,
    *,
    default_local_preference: float,
    term: MLTerm | None = None,
) -> Comparison:
    """Ask the service for the basic and the ML answer to the same request.

    The ML answer adds `term` (default: the model's own, as `/hometown-ml` does).

    Raises:
        UserNotFound: the request names an unknown user.
    """
    conn = await asyncpg.connect(database_url)
    try:
        viewer = await service.resolve_viewer(conn, request, default_local_preference)
        basic = await service.recommend(
            conn, request, weights, default_local_preference=default_local_preference
        )
        ml = await service.recommend(
            conn,
            request,
            weights,
            default_local_preference=default_local_preference,
            probability=probability_of(model),
            term=term or MLTerm.of_model(model.metadata, weights.ml_weight),
        )
    finally:
        await conn.close()
    return Comparison(request, viewer, basic, ml, model)


def load_model(path: Path) -> ClickModel:
    """The saved model (raises `ModelError` saying how to train when there is none)."""
    return artifact.load(path)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(stream: service.Recommended | None, *, with_ml: bool) -> str:
    if stream is None:
        return ""
    c = stream.components
    assert c is not None  # explain=True
    ml = f" {c.ml:5.3f}" if with_ml else ""
    city, title = _cut(stream.city, CITY_WIDTH), _cut(stream.title, TITLE_WIDTH)
    return (
        f"{_cut(stream.stream_id, 14):<14} {stream.ring:>1} {stream.score:7.3f} {c.proximity:6.3f}"
        f" {c.base:6.3f}{ml} {stream.distance_km:7.1f} {city:<{CITY_WIDTH}} {title:<{TITLE_WIDTH}}"
    )


def _move(stream: service.Recommended, position: int, basic_positions: dict[str, int]) -> str:
    before = basic_positions.get(stream.stream_id)
    if before is None:
        return "new"
    if before == position:
        return "="
    return f"↑{before - position}" if before > position else f"↓{position - before}"


def table(comparison: Comparison) -> str:
    """The readable side-by-side text: a header, then one line per rank."""
    request, viewer = comparison.request, comparison.viewer
    basic, ml = comparison.basic.streams, comparison.ml.streams
    meta = comparison.model.metadata
    sha = str(meta.get("sha256") or "?")[:12]
    header_basic = (
        f"{'stream_id':<14} r {'score':>7} {'prox':>6} {'base':>6} {'km':>7}"
        f" {'city':<{CITY_WIDTH}} {'title':<{TITLE_WIDTH}}"
    )
    header_ml = (
        f"{'stream_id':<14} r {'score':>7} {'prox':>6} {'base':>6} {'ml':>5} {'km':>7}"
        f" {'city':<{CITY_WIDTH}} {'title':<{TITLE_WIDTH}} move"
    )
    left_width = len(header_basic)
    lines = [
        f"user {request.user_id} ({viewer.city}, language {viewer.language},"
        f" local preference {viewer.local_preference_strength:g},"
        f" preferred {', '.join(sorted(viewer.preferred_categories)) or 'none'})",
        f"radius {request.radius_km:g} km, max {request.max_results};"
        f" model {meta.get('model_kind', '?')} (sha256 {sha}…);"
        " score = proximity + base + ml, ml = the model's term of P(click);"
        " r = ring (0 = within the radius; each wider ring follows the one before)",
        "",
        f"{'':>3}  {'basic: /v1/scenarios/hometown':<{left_width}}{SEPARATOR}"
        "ML: /v1/scenarios/hometown-ml",
        f"{'#':>3}  {header_basic}{SEPARATOR}{header_ml}",
    ]
    positions = {s.stream_id: i for i, s in enumerate(basic)}
    for i in range(max(len(basic), len(ml))):
        left = _cell(basic[i] if i < len(basic) else None, with_ml=False)
        right = ""
        if i < len(ml):
            right = f"{_cell(ml[i], with_ml=True)} {_move(ml[i], i, positions)}"
        lines.append(f"{i + 1:>3}  {left:<{left_width}}{SEPARATOR}{right}".rstrip())
    same = [s.stream_id for s in basic] == [s.stream_id for s in ml]
    shared = len({s.stream_id for s in basic} & {s.stream_id for s in ml})
    lines += [
        "",
        "the two lists are identical"
        if same
        else f"{shared} of {len(ml)} streams in both lists;"
        f" {sum(1 for s in ml if s.stream_id not in positions)} new in the ML list",
    ]
    return "\n".join(lines)
