"""`python -m ml experiment report NAME`: what each variant of an experiment showed and earned.

The unit is the user. Each user's impressions are the exposure rows the service
logged for them under the experiment (one per stream of every answer); a click
is a `click` event naming the same answer (`request_id`) and stream, counted
once per impression; watch minutes are the `watch` events' minutes matched the
same way. Per variant:

- CTR = clicks / impressions and watch minutes per impression, each a ratio of
  sums over users. A user's impressions are not independent (one user sees many
  lists, and some click much more than others), so the 95% intervals come from
  the delta method with users as the independent units (Deng et al., "Applying
  the Delta Method in Metric Analytics", 2018): var(ΣY/ΣX) ≈ var(Y − r·X) /
  (n · mean(X)²) over users. A naive binomial interval over impressions would be
  too narrow.
- The difference to the control with its 95% interval (independent groups:
  the variances add), and the difference relative to the control's value.
- A sample-ratio-mismatch check: a chi-square test of the users per variant
  against the declared shares. A p-value below `SRM_ALPHA` means the split itself
  is broken (a variant that fails for some users, say), and no difference in the
  table can be trusted.

The experiment's declaration (shares, control) is the `EXPERIMENTS` setting, the
same the server reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pandas as pd
from scipy import stats

from app.experiments import Experiment

#: A two-sided 95% interval.
Z95 = 1.959963984540054
#: Below this p-value the split is reported as a sample-ratio mismatch.
SRM_ALPHA = 0.001
METRICS = ("ctr", "watch_minutes_per_impression")

USERS_SQL = """
WITH shown AS (
    SELECT x.request_id, shown.stream_id, x.user_id, x.variant
    FROM exposures x CROSS JOIN LATERAL unnest(x.stream_ids) AS shown(stream_id)
    WHERE x.experiment = $1 AND x.user_id IS NOT NULL
      AND ($2::timestamptz IS NULL OR x.at >= $2)
), done AS (
    SELECT e.request_id, e.stream_id,
           bool_or(e.type = 'click') AS clicked,
           coalesce(sum(e.minutes) FILTER (WHERE e.type = 'watch'), 0) AS minutes
    FROM events e
    WHERE e.request_id IN (SELECT DISTINCT request_id FROM shown)
    GROUP BY 1, 2
)
SELECT s.user_id, s.variant,
       count(*) AS impressions,
       count(*) FILTER (WHERE d.clicked) AS clicks,
       coalesce(sum(d.minutes), 0)::float8 AS minutes
FROM shown s LEFT JOIN done d USING (request_id, stream_id)
GROUP BY 1, 2
ORDER BY 1, 2
"""


class ReportError(Exception):
    """The experiment cannot be reported (not declared, or nothing logged); says why."""


@dataclass(frozen=True)
class Estimate:
    """A ratio of sums over users, with its delta-method standard error and 95% interval."""

    value: float
    se: float
    low: float
    high: float


@dataclass(frozen=True)
class Arm:
    """One variant: its users, impressions, clicks, minutes, and the two metrics."""

    variant: str
    share: float
    users: int
    impressions: int
    clicks: int
    watch_minutes: float
    ctr: Estimate
    watch_minutes_per_impression: Estimate


@dataclass(frozen=True)
class Difference:
    """A variant's metric minus the control's, with its 95% interval, and relative to it."""

    variant: str
    metric: str
    value: float
    low: float
    high: float
    relative: float | None


@dataclass(frozen=True)
class Report:
    """The whole answer: the arms, the differences to control, the split check."""

    experiment: str
    control: str
    arms: list[Arm]
    differences: list[Difference]
    srm_chi2: float
    srm_p: float
    srm: bool
    users_in_several_variants: int


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> Estimate:
    """ΣY / ΣX over users with the delta method's standard error (see the module docstring).

    One user gives no spread: its standard error is reported as NaN, not as 0.
    """
    y = np.asarray(numerator, dtype=np.float64)
    x = np.asarray(denominator, dtype=np.float64)
    n = len(x)
    if n == 0 or x.sum() == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    r = float(y.sum() / x.sum())
    if n < 2:
        return Estimate(r, math.nan, math.nan, math.nan)
    residual = y - r * x
    se = float(math.sqrt(residual.var(ddof=1) / (n * x.mean() ** 2)))
    return Estimate(r, se, r - Z95 * se, r + Z95 * se)


def summarise(users: pd.DataFrame, experiment: Experiment) -> Report:
    """The report from one row per (user, variant): impressions, clicks, minutes."""
    arms: dict[str, Arm] = {}
    for variant in experiment.variants:
        rows = users[users["variant"] == variant.name]
        impressions = rows["impressions"].to_numpy(dtype=np.float64)
        arms[variant.name] = Arm(
            variant=variant.name,
            share=variant.share,
            users=len(rows),
            impressions=int(impressions.sum()),
            clicks=int(rows["clicks"].sum()),
            watch_minutes=float(rows["minutes"].sum()),
            ctr=ratio(rows["clicks"].to_numpy(), impressions),
            watch_minutes_per_impression=ratio(rows["minutes"].to_numpy(), impressions),
        )
    control = arms[experiment.control_variant]
    differences = []
    for arm in arms.values():
        if arm.variant == control.variant:
            continue
        for metric in METRICS:
            mine, theirs = getattr(arm, metric), getattr(control, metric)
            value = mine.value - theirs.value
            se = math.sqrt(mine.se**2 + theirs.se**2)
            relative = value / theirs.value if theirs.value else None
            differences.append(
                Difference(arm.variant, metric, value, value - Z95 * se, value + Z95 * se, relative)
            )
    observed = np.array([arm.users for arm in arms.values()], dtype=np.float64)
    expected = observed.sum() * np.array([arm.share for arm in arms.values()])
    if observed.sum() > 0:
        chi2 = float(((observed - expected) ** 2 / expected).sum())
        p = float(stats.chi2.sf(chi2, len(observed) - 1))
    else:
        chi2, p = math.nan, math.nan
    several = int((users.groupby("user_id")["variant"].nunique() > 1).sum()) if len(users) else 0
    return Report(
        experiment=experiment.name,
        control=control.variant,
        arms=list(arms.values()),
        differences=differences,
        srm_chi2=chi2,
        srm_p=p,
        srm=bool(p < SRM_ALPHA),
        users_in_several_variants=several,
    )


async def read_users(url: str, name: str, since: datetime | None = None) -> pd.DataFrame:
    """One row per (user, variant) of experiment `name`: impressions, clicks, minutes.

    `since`: only the answers served from then on (an experiment restarted, or one
    simulated run among others).
    """
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(USERS_SQL, name, since)
    finally:
        await conn.close()
    return pd.DataFrame(
        [dict(r) for r in rows],
        columns=["user_id", "variant", "impressions", "clicks", "minutes"],
    )


def find(experiments: tuple[Experiment, ...], name: str) -> Experiment:
    """The declared experiment called `name` (ReportError naming the declared ones if none)."""
    for experiment in experiments:
        if experiment.name == name:
            return experiment
    declared = ", ".join(e.name for e in experiments) or "none"
    raise ReportError(
        f"no experiment {name!r} in EXPERIMENTS (declared: {declared}); the report reads its"
        " shares and control from the same setting the server uses"
    )


def markdown(report: Report) -> str:
    """The report as markdown: the arms, the differences, the split check."""
    lines = [
        f"### Experiment `{report.experiment}` (control: `{report.control}`)",
        "",
        "| variant | share | users | impressions | clicks | CTR [95% CI] |"
        " watch min / impression [95% CI] |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for arm in report.arms:
        lines.append(
            f"| {arm.variant} | {arm.share:g} | {arm.users:,} | {arm.impressions:,} |"
            f" {arm.clicks:,} | {_estimate(arm.ctr, 4)} |"
            f" {_estimate(arm.watch_minutes_per_impression, 3)} |"
        )
    lines += ["", "| variant − control | metric | difference [95% CI] | relative |"]
    lines.append("| --- | --- | --- | ---: |")
    for d in report.differences:
        relative = "-" if d.relative is None else f"{d.relative:+.1%}"
        lines.append(
            f"| {d.variant} − {report.control} | {d.metric} |"
            f" {d.value:+.4f} [{d.low:+.4f}, {d.high:+.4f}] | {relative} |"
        )
    verdict = (
        "**sample-ratio mismatch: the split does not follow the shares; do not trust the"
        " differences**"
        if report.srm
        else "no sample-ratio mismatch"
    )
    lines += [
        "",
        f"Users per variant against the shares: chi-square {report.srm_chi2:.2f},"
        f" p = {report.srm_p:.3g}: {verdict}.",
    ]
    if report.users_in_several_variants:
        lines.append(
            f"{report.users_in_several_variants:,} users were seen in more than one variant"
            " (the shares changed during the experiment?)."
        )
    return "\n".join(lines) + "\n"


def _estimate(e: Estimate, digits: int) -> str:
    if math.isnan(e.se):
        return f"{e.value:.{digits}f}"
    return f"{e.value:.{digits}f} [{e.low:.{digits}f}, {e.high:.{digits}f}]"


def plot(report: Report) -> Any:
    """One panel per metric: each variant's value with its 95% interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    for axis, metric, title in zip(
        fig.subplots(1, 2), METRICS, ("CTR", "watch minutes per impression"), strict=True
    ):
        values = [getattr(arm, metric) for arm in report.arms]
        x = np.arange(len(values))
        errors = [[v.value - v.low for v in values], [v.high - v.value for v in values]]
        colors = ["#888888" if arm.variant == report.control else "#1f77b4" for arm in report.arms]
        axis.bar(x, [v.value for v in values], yerr=np.nan_to_num(errors), color=colors, capsize=6)
        axis.set_xticks(x, [arm.variant for arm in report.arms])
        axis.set_title(title)
    fig.suptitle(
        f"experiment {report.experiment}: each variant with its 95% interval"
        f" (grey: the control, {report.control})"
    )
    return fig


def write(report: Report, out_dir: Path) -> list[Path]:
    """`experiment_<name>.md`, `.json` and `.png` in `out_dir` (created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"experiment_{report.experiment}"
    md, js, png = (stem.with_suffix(suffix) for suffix in (".md", ".json", ".png"))
    md.write_text(markdown(report))
    js.write_text(json.dumps(asdict(report), indent=2, allow_nan=True) + "\n")
    plot(report).savefig(png)
    return [md, js, png]
