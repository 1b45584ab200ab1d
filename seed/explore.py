"""Plots that show what a dataset looks like: where it is, how good, how local.

`explore(url, out_dir)` reads the database and writes four PNG files:

- `map.png`: users and streams on a longitude/latitude plot, live streams
  highlighted, the cities with the most streams labelled;
- `quality.png`: the `stream_quality_score` distribution, as a histogram and as a
  complementary CDF on log-log axes, where a power law is a straight line;
- `click_rate_vs_distance.png`: click-through rate per user-to-stream distance
  band, with the impressions behind each rate;
- `categories.png`: streams per category (live part shown) and users/streams per
  language.

It has to stay quick on the full-size dataset (1M users and streams, 10M
impressions), so nothing row-by-row leaves the database except two point samples
of at most `MAX_POINTS` rows together: counts, histograms and click rates are
aggregated in SQL, the click rates over a Bernoulli sample of at most
`MAX_IMPRESSIONS` impressions.

An empty database is not an error: every plot is still written, with a "no data"
note where its numbers would be, so callers always get the same four files.

Each query runs on its own (no long transaction): a snapshot held for the whole
run would block a concurrent `seed.loader` swap, and plots do not need one.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

#: Most points drawn on the map, users and streams together.
MAX_POINTS = 200_000
#: Share of `MAX_POINTS` spent on users; streams get the rest.
USER_POINT_SHARE = 0.5
#: Most impressions the click-rate aggregate reads (a Bernoulli sample beyond that).
#: A million keeps the 95% interval of a band holding 1% of them within about
#: +-0.6 points and costs ~4 s at 10M impressions (the joins dominate).
MAX_IMPRESSIONS = 1_000_000
#: Cities labelled on the map.
TOP_CITIES = 10
#: Fixed sampling seed, so two runs over the same data draw the same picture.
SAMPLE_SEED = 42
#: Distance band edges in km. The last edge is above half the Earth's
#: circumference (20,004 km on the sphere), so every distance falls in a band.
DISTANCE_EDGES_KM = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20050)
#: Fine bins for the quality score (0..10): 1000 bins of 0.01, aggregated in SQL.
QUALITY_BINS = 1000
QUALITY_MAX = 10.0

FILES = ("map.png", "quality.png", "click_rate_vs_distance.png", "categories.png")
DPI = 110
COLORS = {
    "users": "#4c72b0",
    "streams": "#dd8452",
    "live": "#c0392b",
    "bars": "#8172b3",
    "grid": "#c8d0d8",
}


def say(message: str) -> None:
    """Progress on stderr, one line per step (stdout stays free for the CLI)."""
    print(f"[explore] {message}", file=sys.stderr, flush=True)


@dataclass
class City:
    """A city label: where to put it and what it counts."""

    name: str
    latitude: float
    longitude: float
    streams: int
    live: int


@dataclass
class DistanceBands:
    """Impressions and clicks per distance band, from a sample of the impressions."""

    edges_km: tuple[float, ...] = DISTANCE_EDGES_KM
    impressions: np.ndarray = field(default_factory=lambda: np.zeros(len(DISTANCE_EDGES_KM) - 1))
    clicks: np.ndarray = field(default_factory=lambda: np.zeros(len(DISTANCE_EDGES_KM) - 1))
    sample_percent: float = 100.0


@dataclass
class Snapshot:
    """Everything the plots need, already aggregated or sampled by the database."""

    users: int = 0
    streams: int = 0
    live: int = 0
    interactions: int = 0
    user_points: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    stream_points: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    stream_live: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    cities: list[City] = field(default_factory=list)
    quality_counts: np.ndarray = field(default_factory=lambda: np.zeros(QUALITY_BINS))
    distance: DistanceBands = field(default_factory=DistanceBands)
    categories: list[tuple[str, int, int]] = field(default_factory=list)
    languages: list[tuple[str, int, int]] = field(default_factory=list)


# --------------------------------------------------------------------------- SQL


def _sample_percent(total: int, wanted: int) -> float:
    """TABLESAMPLE percentage that keeps about `wanted` of `total` rows."""
    if total <= wanted:
        return 100.0
    return 100.0 * wanted / total


async def _points(
    conn: asyncpg.Connection, table: str, total: int, wanted: int, extra: str
) -> list[asyncpg.Record]:
    # BERNOULLI draws rows independently (SYSTEM draws whole pages, and the loader
    # writes rows grouped the way the producer made them: clumps on the map).
    # It still reads every page, which costs ~0.1 s per million rows.
    percent = _sample_percent(total, wanted)
    sample = "" if percent >= 100 else f"TABLESAMPLE BERNOULLI ($1) REPEATABLE ({SAMPLE_SEED})"
    sql = f"SELECT longitude, latitude{extra} FROM {table} {sample}"  # identifiers are ours
    if sample:
        return list(await conn.fetch(sql, percent))
    return list(await conn.fetch(sql))


async def _distance_bands(conn: asyncpg.Connection, interactions: int) -> DistanceBands:
    percent = _sample_percent(interactions, MAX_IMPRESSIONS)
    sample = "" if percent >= 100 else f"TABLESAMPLE BERNOULLI ($2) REPEATABLE ({SAMPLE_SEED})"
    # use_spheroid = false: the sphere costs 0.7 s per million pairs against 1.7 s
    # for the spheroid, and differs from it by under 0.5%, far below the width of a
    # band. width_bucket returns i for edges[i-1] <= d < edges[i], so band i is
    # DISTANCE_EDGES_KM[i-1:i+1].
    sql = f"""
        SELECT width_bucket(ST_Distance(u.location, s.location, false) / 1000.0, $1::float8[])
                   AS band,
               count(*) AS impressions,
               count(*) FILTER (WHERE i.clicked) AS clicks
        FROM (SELECT user_id, stream_id, clicked FROM interactions {sample}) AS i
        JOIN users AS u ON u.user_id = i.user_id
        JOIN streams AS s ON s.stream_id = i.stream_id
        GROUP BY band
    """
    edges = [float(edge) for edge in DISTANCE_EDGES_KM]
    args: list[object] = [edges] if percent >= 100 else [edges, percent]
    async with conn.transaction():
        # A sample scan cannot be split between parallel workers, so a parallel
        # plan has every worker redo the whole sample and its join with users:
        # measured twice as slow as one process at 10M impressions.
        await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        rows = await conn.fetch(sql, *args)
    bands = DistanceBands(sample_percent=percent)
    for row in rows:
        index = int(row["band"]) - 1
        if 0 <= index < len(bands.impressions):
            bands.impressions[index] = row["impressions"]
            bands.clicks[index] = row["clicks"]
    return bands


async def gather_async(url: str) -> Snapshot:
    """Read the counts, samples and aggregates the plots need (see `gather`)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET search_path = public")
        if await conn.fetchval("SELECT to_regclass('public.interactions')") is None:
            raise RuntimeError("the schema is missing: run `alembic upgrade head` first")
        # The hash tables of 1M users and 1M streams (~80 MB each) fit in memory
        # with this, instead of spilling to temporary files.
        await conn.execute("SET work_mem = '256MB'")
        snap = Snapshot()

        started = time.perf_counter()
        snap.users = int(await conn.fetchval("SELECT count(*) FROM users"))
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE is_live) AS live FROM streams"
        )
        snap.streams, snap.live = int(row["n"]), int(row["live"])
        snap.interactions = int(await conn.fetchval("SELECT count(*) FROM interactions"))
        say(
            f"{snap.users:,} users, {snap.streams:,} streams ({snap.live:,} live),"
            f" {snap.interactions:,} impressions ({time.perf_counter() - started:.1f}s)"
        )
        if snap.users == 0 and snap.streams == 0:
            say("the database is empty: the plots will say 'no data'")
            return snap

        started = time.perf_counter()
        user_budget = int(MAX_POINTS * USER_POINT_SHARE)
        users = await _points(conn, "users", snap.users, user_budget, "")
        streams = await _points(conn, "streams", snap.streams, MAX_POINTS - len(users), ", is_live")
        snap.user_points = np.array([(r[0], r[1]) for r in users], dtype=float).reshape(-1, 2)
        snap.stream_points = np.array([(r[0], r[1]) for r in streams], dtype=float).reshape(-1, 2)
        snap.stream_live = np.array([bool(r[2]) for r in streams], dtype=bool)
        say(
            f"map sample: {len(users):,} users, {len(streams):,} streams"
            f" ({time.perf_counter() - started:.1f}s)"
        )

        started = time.perf_counter()
        # Medians, not means, place the labels: one far-away town that shares a
        # big city's name cannot drag the label off the city.
        cities = await conn.fetch(
            """
            SELECT city, count(*) AS n, count(*) FILTER (WHERE is_live) AS live,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY latitude) AS lat,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY longitude) AS lon
            FROM streams GROUP BY city ORDER BY n DESC, city LIMIT $1
            """,
            TOP_CITIES,
        )
        snap.cities = [
            City(r["city"], float(r["lat"]), float(r["lon"]), int(r["n"]), int(r["live"]))
            for r in cities
        ]
        quality = await conn.fetch(
            """
            SELECT least(floor(stream_quality_score * $1 / $2), $1 - 1)::int AS bin,
                   count(*) AS n
            FROM streams GROUP BY bin
            """,
            QUALITY_BINS,
            QUALITY_MAX,
        )
        for r in quality:
            snap.quality_counts[int(r["bin"])] = r["n"]
        categories = await conn.fetch(
            """
            SELECT category_id, count(*) AS n, count(*) FILTER (WHERE is_live) AS live
            FROM streams GROUP BY category_id ORDER BY n DESC, category_id
            """
        )
        snap.categories = [(r["category_id"], int(r["n"]), int(r["live"])) for r in categories]
        languages = await conn.fetch(
            """
            SELECT language, sum(users)::bigint AS users, sum(streams)::bigint AS streams
            FROM (
                SELECT language, count(*) AS users, 0 AS streams FROM users GROUP BY language
                UNION ALL
                SELECT language, 0, count(*) FROM streams GROUP BY language
            ) AS t
            GROUP BY language ORDER BY sum(users) + sum(streams) DESC, language
            """
        )
        snap.languages = [(r["language"], int(r["users"]), int(r["streams"])) for r in languages]
        say(
            f"cities, quality, categories and languages aggregated"
            f" ({time.perf_counter() - started:.1f}s)"
        )

        if snap.interactions:
            started = time.perf_counter()
            snap.distance = await _distance_bands(conn, snap.interactions)
            say(
                f"click rate by distance over {int(snap.distance.impressions.sum()):,}"
                f" impressions ({snap.distance.sample_percent:.3g}% sample,"
                f" {time.perf_counter() - started:.1f}s)"
            )
        return snap
    finally:
        await conn.close()


def gather(url: str) -> Snapshot:
    """Synchronous wrapper of `gather_async`: counts, samples and aggregates for the plots.

    Args:
        url: a `postgresql://` URL of a migrated database.

    Returns:
        A `Snapshot`; on an empty database its counts are zero and its arrays empty.

    Raises:
        RuntimeError: the tables do not exist (the migrations have not run).
    """
    return asyncio.run(gather_async(url))


# ------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Figure:
    """A figure bound to the Agg canvas, without pyplot.

    Going through `Figure` directly never touches pyplot's global backend or
    figure registry, so importing or calling this module changes nothing for a
    caller that uses matplotlib itself (and it never needs a display).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _no_data(ax: Axes, what: str) -> None:
    ax.text(
        0.5,
        0.5,
        f"no data\n({what})",
        ha="center",
        va="center",
        fontsize=14,
        color="#777777",
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _short(count: float) -> str:
    """1234 -> '1.2k', 3400000 -> '3.4M': labels that stay short on the map."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            return f"{count / limit:.1f}{suffix}"
    return f"{count:.0f}"


def _stretch(lat_lo: float, lat_hi: float) -> float:
    """Plate carrée y/x stretch, 1/cos(mid latitude).

    With it, distances near the middle of the window look the same east-west and
    north-south: an equal-ish aspect without a projection library.
    """
    return 1 / max(0.2, math.cos(math.radians((lat_lo + lat_hi) / 2)))


def _map_extent(points: np.ndarray) -> tuple[float, float, float, float]:
    """Longitude/latitude window around the points, padded, at most 3 times wider than tall."""
    if len(points) == 0:
        return -180.0, 180.0, -60.0, 80.0
    lon_lo, lat_lo = np.percentile(points, 0.1, axis=0)
    lon_hi, lat_hi = np.percentile(points, 99.9, axis=0)
    pad_lon = max(5.0, 0.08 * (lon_hi - lon_lo))
    pad_lat = max(5.0, 0.08 * (lat_hi - lat_lo))
    lon_lo, lon_hi = max(-180.0, lon_lo - pad_lon), min(180.0, lon_hi + pad_lon)
    lat_lo, lat_hi = max(-90.0, lat_lo - pad_lat), min(90.0, lat_hi + pad_lat)
    # Points spread along a parallel (Paris to Tokyo) would give a thin strip.
    missing = (lon_hi - lon_lo) / (3 * _stretch(lat_lo, lat_hi)) - (lat_hi - lat_lo)
    if missing > 0:
        lat_lo, lat_hi = max(-90.0, lat_lo - missing / 2), min(90.0, lat_hi + missing / 2)
    return float(lon_lo), float(lon_hi), float(lat_lo), float(lat_hi)


def _graticule_step(span: float) -> float:
    """Degrees between graticule lines: at least 3 lines across `span`."""
    for step in (30.0, 10.0, 5.0, 2.0):
        if span / step >= 3:
            return step
    return 1.0


def _plural(count: int, noun: str) -> str:
    return f"{_short(count)} {noun}{'' if count == 1 else 's'}"


#: Where a city label may go relative to its city, in points, tried in order.
LABEL_SPOTS = (
    (7, 5, "left", "bottom"),
    (7, -5, "left", "top"),
    (-7, 5, "right", "bottom"),
    (-7, -5, "right", "top"),
    (0, 12, "center", "bottom"),
    (0, -12, "center", "top"),
    (30, 24, "left", "bottom"),
    (30, -24, "left", "top"),
    (-30, 24, "right", "bottom"),
    (-30, -24, "right", "top"),
    (0, 40, "center", "bottom"),
    (0, -40, "center", "top"),
)


def _marker_size(count: int, biggest: float) -> float:
    """Dot size for `count` points: big dots for a few, specks for hundreds of thousands."""
    return float(np.clip(10 / max(count, 1) ** 0.25, 0.9, biggest))


def _marker_alpha(count: int) -> float:
    """Opacity that lets dense clusters read as density instead of a solid blob."""
    return float(np.clip(6000 / max(count, 1), 0.3, 0.9))


def _label_cities(fig: Figure, ax: Axes, cities: list[City]) -> int:
    """Name the cities, biggest first, skipping a label that would overlap another.

    Each label tries the positions of `LABEL_SPOTS` around its city and keeps the
    first one that stays inside the map and clear of the labels already placed and
    of the labelled cities' dots.
    Returns how many labels were placed.
    """
    from matplotlib import patheffects

    fig.canvas.draw()  # runs the layout, so the data->pixel transform is final
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    frame = ax.get_window_extent(renderer)
    outline = [patheffects.withStroke(linewidth=3, foreground="white")]
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    lon_lo, lon_hi = ax.get_xlim()
    lat_lo, lat_hi = ax.get_ylim()
    # The labelled cities' own dots are obstacles too: a label must not hide the
    # city another label is about to name.
    dots = ax.transData.transform([(city.longitude, city.latitude) for city in cities])
    dot_boxes = [Bbox.from_bounds(x - 4, y - 4, 8, 8) for x, y in dots]
    placed: list[Bbox] = []
    for rank, city in enumerate(cities):
        if not (lon_lo <= city.longitude <= lon_hi and lat_lo <= city.latitude <= lat_hi):
            continue
        text = f"{city.name}\n{_plural(city.streams, 'stream')} · {_short(city.live)} live"
        for dx, dy, ha, va in LABEL_SPOTS:
            label = ax.annotate(
                text,
                (city.longitude, city.latitude),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                fontsize=8.5,
                linespacing=1.1,
                fontweight="bold" if rank < 3 else "normal",
                color="#222222",
                path_effects=outline,
                arrowprops={"arrowstyle": "-", "color": "#555555", "linewidth": 0.6},
            )
            # Labels never move the layout (they are inside the axes by construction).
            label.set_in_layout(False)
            # The text's own box: the annotation's would include the leader line,
            # which always touches the city it names.
            label.update_positions(renderer)
            box = Text.get_window_extent(label, renderer).padded(2)
            inside = frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1)
            obstacles = placed + dot_boxes[:rank] + dot_boxes[rank + 1 :]
            if inside and not any(box.overlaps(other) for other in obstacles):
                placed.append(box)
                break
            label.remove()
    return len(placed)


ZOOM_HALF_KM = 120.0


def _plot_zoom(ax: Axes, snap: Snapshot, city: City) -> None:
    """The biggest city up close: how users and streamers spread over the metro area."""
    half_lat = ZOOM_HALF_KM / 111.2
    half_lon = half_lat / max(math.cos(math.radians(city.latitude)), 0.05)
    window = (city.longitude - half_lon, city.longitude + half_lon)
    ax.set_xlim(*window)
    ax.set_ylim(city.latitude - half_lat, city.latitude + half_lat)
    ax.set_aspect(1 / max(math.cos(math.radians(city.latitude)), 0.05))
    ax.set_facecolor("#f4f7fa")
    ax.grid(color=COLORS["grid"], linewidth=0.6, alpha=0.7)
    ax.set_axisbelow(True)
    ax.set_title(f"{city.name} up close (±{ZOOM_HALF_KM:.0f} km)")
    ax.set_xlabel("longitude (°)")

    def near(points: np.ndarray) -> np.ndarray:
        lon, lat = points[:, 0], points[:, 1]
        keep = (np.abs(lat - city.latitude) <= half_lat) & (lon >= window[0]) & (lon <= window[1])
        return points[keep]

    live = snap.stream_live
    layers = (
        (near(snap.user_points), "users", 2.0, 0.35),
        (near(snap.stream_points[~live]), "streams", 3.5, 0.8),
        (near(snap.stream_points[live]), "live", 3.8, 0.9),
    )
    for points, color, size, alpha in layers:
        ax.plot(points[:, 0], points[:, 1], "o", ms=size, alpha=alpha, mew=0, color=COLORS[color])


def plot_map(snap: Snapshot, path: Path) -> None:
    """Users, streams and live streams on an equirectangular plot, top cities named."""
    from matplotlib.lines import Line2D

    both = np.vstack([snap.user_points, snap.stream_points])
    lon_lo, lon_hi, lat_lo, lat_hi = _map_extent(both)
    aspect = _stretch(lat_lo, lat_hi)
    # The figure takes the window's shape, so the map fills it instead of floating
    # in white bands (the 1.6 in are the title, the axis labels and the legend).
    height = float(np.clip(12.5 * (lat_hi - lat_lo) * aspect / (lon_hi - lon_lo) + 1.6, 4, 12))
    fig = _figure(19, height)
    grid = fig.add_gridspec(1, 2, width_ratios=[3.2, 1])
    ax = fig.add_subplot(grid[0])
    ax.set_facecolor("#f4f7fa")
    ax.set_xlim(lon_lo, lon_hi)
    ax.set_ylim(lat_lo, lat_hi)
    ax.set_aspect(aspect)
    step = _graticule_step(min(lon_hi - lon_lo, lat_hi - lat_lo))
    ax.set_xticks(np.arange(math.ceil(lon_lo / step) * step, lon_hi + 1e-9, step))
    ax.set_yticks(np.arange(math.ceil(lat_lo / step) * step, lat_hi + 1e-9, step))
    ax.grid(color=COLORS["grid"], linewidth=0.6, alpha=0.7)
    ax.set_axisbelow(True)
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(
        f"Where the users and streams are: {snap.users:,} users, {snap.streams:,} streams,"
        f" {snap.live:,} live"
    )
    if len(both) == 0:
        _no_data(ax, "no users and no streams")
        fig.savefig(path)
        return

    users, streams, live = snap.user_points, snap.stream_points, snap.stream_live
    offline, on_air = streams[~live], streams[live]
    stream_size = _marker_size(len(streams), 6)
    # Streamers spread wider than their viewers, so at world scale a stream layer on top
    # would hide every user: users go on top as translucent specks instead.
    layers = (
        (offline, "streams", stream_size, _marker_alpha(len(offline))),
        (on_air, "live", stream_size + 0.4, _marker_alpha(len(on_air))),
        (users, "users", 0.8 * _marker_size(len(users), 6), 0.5 * _marker_alpha(len(users))),
    )
    for points, color, size, alpha in layers:
        ax.plot(points[:, 0], points[:, 1], "o", ms=size, alpha=alpha, mew=0, color=COLORS[color])
    if snap.cities:
        _plot_zoom(fig.add_subplot(grid[1]), snap, snap.cities[0])
    drawn = (
        f"users ({len(users):,} of {snap.users:,} drawn)",
        f"offline streams ({len(offline):,} of {snap.streams - snap.live:,} drawn)",
        f"live streams ({len(on_air):,} of {snap.live:,} drawn)",
    )
    handles = [
        Line2D([], [], ls="", marker="o", ms=7, color=COLORS[color], label=text)
        for color, text in zip(("users", "streams", "live"), drawn, strict=True)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    labelled = _label_cities(fig, ax, snap.cities)
    if labelled < len(snap.cities):
        say(f"map: {len(snap.cities) - labelled} city labels left out (no room)")
    fig.savefig(path)


def _power_law_slope(edges: np.ndarray, ccdf: np.ndarray) -> tuple[float, float, float] | None:
    """Least-squares slope of log CCDF against log x over the body of the tail.

    Fitted between the median and the point where 1 in 1000 streams remain: the
    head is not expected to follow the law, and the last points are a handful of
    streams (plus the score's cap at 10), which would dominate an unweighted fit.
    Returns (alpha, x_from, x_to) with CCDF ~ x^-alpha, or None when there is
    too little to fit.
    """
    keep = (edges > 0) & (ccdf <= 0.5) & (ccdf >= 1e-3)
    if keep.sum() < 5:
        return None
    x, y = np.log10(edges[keep]), np.log10(ccdf[keep])
    if np.ptp(x) <= 0:
        return None
    slope, _ = np.polyfit(x, y, 1)
    return float(-slope), float(edges[keep].min()), float(edges[keep].max())


def plot_quality(snap: Snapshot, path: Path) -> None:
    """Quality score histogram, and its CCDF on log-log axes (a power law is a line)."""
    fig = _figure(13, 5.2)
    hist_ax, ccdf_ax = fig.subplots(1, 2)
    counts = snap.quality_counts
    total = counts.sum()
    fig.suptitle(f"stream_quality_score over all {int(total):,} streams")
    if total == 0:
        _no_data(hist_ax, "no streams")
        _no_data(ccdf_ax, "no streams")
        fig.savefig(path)
        return

    width = QUALITY_MAX / QUALITY_BINS
    coarse = counts.reshape(50, -1).sum(axis=1)  # 50 bins of 0.2
    coarse_width = QUALITY_MAX / len(coarse)
    hist_ax.bar(
        np.arange(len(coarse)) * coarse_width,
        coarse,
        width=coarse_width,
        align="edge",
        color=COLORS["streams"],
        edgecolor="white",
        linewidth=0.4,
    )
    centres = (np.arange(QUALITY_BINS) + 0.5) * width
    mean = float((centres * counts).sum() / total)
    median = float(centres[np.searchsorted(np.cumsum(counts), total / 2)])
    hist_ax.axvline(median, color="#333333", linestyle="--", linewidth=1)
    hist_ax.axvline(mean, color="#333333", linestyle=":", linewidth=1)
    hist_ax.text(median, coarse.max(), f" median {median:.2f}", va="top", fontsize=9)
    hist_ax.text(mean, coarse.max() * 0.9, f" mean {mean:.2f}", va="top", fontsize=9)
    hist_ax.set_xlim(0, QUALITY_MAX)
    hist_ax.set_xlabel("quality score (bins of 0.2)")
    hist_ax.set_ylabel("streams")
    hist_ax.set_title("histogram")
    hist_ax.grid(axis="y", color=COLORS["grid"], linewidth=0.6)

    # P(score >= x) at each fine bin's lower edge: exact over the whole table at a
    # resolution of 0.01, without shipping a million scores to Python.
    lower = np.arange(QUALITY_BINS) * width
    ccdf = counts[::-1].cumsum()[::-1] / total
    keep = (counts > 0) & (lower > 0)
    ccdf_ax.loglog(
        lower[keep], ccdf[keep], ".", ms=4, color=COLORS["streams"], label="P(score ≥ x)"
    )
    fit = _power_law_slope(lower[keep], ccdf[keep])
    if fit is not None:
        alpha, x_from, x_to = fit
        xs = np.array([x_from, x_to])
        anchor = ccdf[keep][np.searchsorted(lower[keep], x_from)]
        ccdf_ax.loglog(
            xs,
            anchor * (xs / x_from) ** -alpha,
            "-",
            color="#333333",
            linewidth=1.2,
            label=f"power-law fit: P ∝ x^-{alpha:.2f}",
        )
    ccdf_ax.set_xlabel("quality score x (log)")
    ccdf_ax.set_ylabel("share of streams with score ≥ x (log)")
    ccdf_ax.set_title("complementary CDF, log-log: a straight line is a power law")
    ccdf_ax.grid(which="both", color=COLORS["grid"], linewidth=0.5, alpha=0.7)
    ccdf_ax.legend(fontsize=9)
    fig.savefig(path)


def _wilson(clicks: np.ndarray, shown: np.ndarray, z: float = 1.96) -> np.ndarray:
    """95% Wilson interval half-widths around the rate (stable for tiny counts)."""
    n = np.maximum(shown, 1)
    p = clicks / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return np.vstack([np.maximum(p - (centre - half), 0), np.maximum(centre + half - p, 0)])


def plot_click_rate(snap: Snapshot, path: Path) -> None:
    """Click-through rate per distance band (log km), impressions as bars behind it."""
    fig = _figure(11, 6)
    ax = fig.add_subplot()
    bands = snap.distance
    shown, clicks = bands.impressions, bands.clicks
    sampled = (
        "all impressions"
        if bands.sample_percent >= 100
        else (f"a {bands.sample_percent:.3g}% sample of {snap.interactions:,} impressions")
    )
    ax.set_title(f"Click-through rate by user-to-stream distance ({sampled})")
    if shown.sum() == 0:
        _no_data(ax, "no impressions")
        fig.savefig(path)
        return

    edges = np.array(bands.edges_km, dtype=float)
    # A log axis cannot show 0 km: the first band is drawn from a tenth of its top.
    left = edges[:-1].copy()
    left[0] = edges[1] / 10
    right = edges[1:]
    centre = np.sqrt(left * right)
    has = shown > 0

    counts_ax = ax.twinx()
    ax.set_zorder(counts_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    counts_ax.bar(
        left[has],
        shown[has],
        width=(right - left)[has],
        align="edge",
        color=COLORS["bars"],
        alpha=0.25,
        edgecolor="white",
    )
    counts_ax.set_yscale("log")
    counts_ax.set_ylabel("impressions in band (log)", color="#5a4f8a")
    counts_ax.set_ylim(0.5, shown.max() * 30)

    rate = np.where(has, clicks / np.maximum(shown, 1), np.nan)
    error = _wilson(clicks, shown)
    ax.errorbar(
        centre[has],
        rate[has],
        yerr=error[:, has],
        fmt="o-",
        color=COLORS["live"],
        ecolor="#999999",
        capsize=3,
        ms=6,
        label="click-through rate (95% interval)",
    )
    overall = clicks.sum() / shown.sum()
    ax.axhline(overall, color="#555555", linestyle="--", linewidth=1)
    ax.text(
        left[0] * 1.1,
        overall,
        f"overall {overall:.1%}",
        va="bottom",
        fontsize=9,
        color="#444444",
    )
    for x, y, n in zip(centre[has], rate[has], shown[has], strict=True):
        ax.annotate(
            _short(n), (x, y), xytext=(0, 9), textcoords="offset points", ha="center", fontsize=7.5
        )
    ax.set_xscale("log")
    ax.set_xlim(left[0], edges[-1])
    ax.set_ylim(0, max(float(np.nanmax(rate + np.where(has, error[1], 0))) * 1.2, 0.01))
    ax.yaxis.set_major_formatter(_percent_formatter())
    ticks = [e for e in edges[1:-1] if e in (1, 10, 100, 1000, 10000)]
    ax.set_xticks(ticks, [f"{t:,.0f} km" for t in ticks])
    ax.set_xlabel("great-circle distance between user and stream (log; first band is 0–1 km)")
    ax.set_ylabel("click-through rate")
    ax.grid(which="major", color=COLORS["grid"], linewidth=0.6)
    ax.legend(loc="upper right", fontsize=9)
    fig.savefig(path)


def _percent_formatter() -> PercentFormatter:
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1, decimals=1)


def plot_categories(snap: Snapshot, path: Path, top: int = 15) -> None:
    """Streams per category (live share on top) and users vs streams per language."""
    fig = _figure(13, 5.6)
    cat_ax, lang_ax = fig.subplots(1, 2)
    fig.suptitle(f"What is on: {snap.streams:,} streams, {snap.users:,} users")
    cat_ax.set_title("streams per category")
    lang_ax.set_title("languages: users vs streams")
    if not snap.categories:
        _no_data(cat_ax, "no streams")
    else:
        rows = snap.categories[:top][::-1]  # largest at the top of a horizontal bar chart
        names = [r[0] for r in rows]
        offline = np.array([r[1] - r[2] for r in rows])
        live = np.array([r[2] for r in rows])
        cat_ax.barh(names, offline, color=COLORS["streams"], label="offline")
        cat_ax.barh(names, live, left=offline, color=COLORS["live"], label="live")
        for y, (total, on_air) in enumerate(zip(offline + live, live, strict=True)):
            share = on_air / total if total else 0
            cat_ax.text(total, y, f" {share:.1%} live", va="center", fontsize=8)
        cat_ax.set_xlim(0, (offline + live).max() * 1.18)
        cat_ax.set_xlabel("streams")
        cat_ax.legend(loc="lower right", fontsize=9)
        cat_ax.grid(axis="x", color=COLORS["grid"], linewidth=0.6)
        more = len(snap.categories) - len(rows)
        if more:
            cat_ax.set_title(f"streams per category (top {top}, {more} more)")
    if not snap.languages:
        _no_data(lang_ax, "no users or streams")
    else:
        rows = snap.languages[:top]
        users = np.array([r[1] for r in rows], dtype=float)
        streams = np.array([r[2] for r in rows], dtype=float)
        # Shares, not counts: users and streams differ in number, and the question is
        # whether each language has the streams its audience would need.
        users /= max(snap.users, 1)
        streams /= max(snap.streams, 1)
        x = np.arange(len(rows))
        lang_ax.bar(x - 0.2, users, width=0.4, color=COLORS["users"], label="share of users")
        lang_ax.bar(x + 0.2, streams, width=0.4, color=COLORS["streams"], label="share of streams")
        lang_ax.set_xticks(x, [r[0] for r in rows])
        lang_ax.yaxis.set_major_formatter(_percent_formatter())
        lang_ax.set_xlabel("language (ISO 639-1)")
        lang_ax.legend(fontsize=9)
        lang_ax.grid(axis="y", color=COLORS["grid"], linewidth=0.6)
    fig.savefig(path)


def explore(url: str, out_dir: Path) -> list[Path]:
    """Write the exploration plots of the database at `url` into `out_dir`.

    Args:
        url: a `postgresql://` URL of a migrated database.
        out_dir: where the PNG files go; created if missing, files overwritten.

    Returns:
        The paths written, always the four of `FILES` in that order. On an empty
        database each plot carries a "no data" note instead of failing, so a
        caller (or a CI job) never has to special-case a fresh database.

    Raises:
        RuntimeError: the tables do not exist (the migrations have not run).
    """
    started = time.perf_counter()
    snap = gather(url)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = (plot_map, plot_quality, plot_click_rate, plot_categories)
    written: list[Path] = []
    for name, plot in zip(FILES, plots, strict=True):
        path = out_dir / name
        step = time.perf_counter()
        plot(snap, path)
        written.append(path)
        size_kib = path.stat().st_size / 1024
        say(f"wrote {path} ({size_kib:.0f} KiB, {time.perf_counter() - step:.1f}s)")
    say(f"{len(written)} plots in {out_dir} in {time.perf_counter() - started:.1f}s")
    return written
