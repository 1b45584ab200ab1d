"""The feed evaluation's outputs: a markdown report, feed_evaluation.json and two PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ml.feed.metrics import STAGE1_KS, STAGE1_NDCG_K, STAGE2_K

JSON_FILE = "feed_evaluation.json"
RECALL_PNG = "feed_recall_at_k.png"
NDCG_PNG = "feed_ndcg_by_ranker.png"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def markdown(summary: dict[str, Any]) -> str:
    """The report a person reads (stdout)."""
    data = summary["data"]
    lines = [
        "# Home-feed evaluation",
        "",
        f"Data: {data['source']}: {data['users']:,} users, {data['streams']:,} streams,"
        f" {data['interactions']:,} interactions; {data['test_users']:,} users watched something"
        f" in the test slice, {data['cold_start_users']:,} of them cold-start"
        f" (fewer than {data['min_history']} watched interactions before it).",
        "",
    ]
    for group, by_source in summary["stage1_by_group"].items():
        lines += [
            f"## Stage 1: candidate sources ({group} users,"
            f" {next(iter(by_source.values()))['users']:,})",
            "",
        ]
        header = ["source", *(f"Recall@{k}" for k in STAGE1_KS), f"NDCG@{STAGE1_NDCG_K}"]
        rows = [
            [
                name,
                *(f"{m[f'recall@{k}']:.4f}" for k in STAGE1_KS),
                f"{m[f'ndcg@{STAGE1_NDCG_K}']:.4f}",
            ]
            for name, m in by_source.items()
        ]
        lines += [*_table(header, rows), ""]
    if "stage2_by_group" in summary:
        for group, by_ranker in summary["stage2_by_group"].items():
            users = next(iter(by_ranker.values()))["users"]
            lines += [
                f"## Stage 2: ordering the union ({group} users with a watched"
                f" candidate, {users:,})",
                "",
            ]
            header = ["ranker", f"NDCG@{STAGE2_K}", f"Recall@{STAGE2_K}", "MAP", "MRR"]
            rows = [
                [
                    name,
                    f"{m[f'ndcg@{STAGE2_K}']:.4f}",
                    f"{m[f'recall@{STAGE2_K}']:.4f}",
                    f"{m['map']:.4f}",
                    f"{m['mrr']:.4f}",
                ]
                for name, m in sorted(by_ranker.items(), key=lambda kv: -kv[1][f"ndcg@{STAGE2_K}"])
            ]
            lines += [*_table(header, rows), ""]
        c = summary["stage2_comparison"]
        verdict = (
            "the reranker is better"
            if c["low"] > 0
            else "the reranker is worse"
            if c["high"] < 0
            else "no significant difference"
        )
        lines += [
            f"Reranker − {c['against']} ({c['metric']}, {c['users']} users):"
            f" {c['difference']:+.4f},"
            f" 95% paired bootstrap interval [{c['low']:+.4f}, {c['high']:+.4f}]"
            f" ({c['resamples']:,} resamples): {verdict}.",
            "",
        ]
    else:
        lines += ["Stage 2 needs the users and streams tables; this data has none.", ""]
    return "\n".join(lines)


def write(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """feed_evaluation.json and the PNGs; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / JSON_FILE]
    written[0].write_text(json.dumps(summary, indent=2, default=float))

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, m in summary["stage1"].items():
        axes.plot(STAGE1_KS, [m[f"recall@{k}"] for k in STAGE1_KS], marker="o", label=name)
    axes.set_xlabel("K (candidates kept)")
    axes.set_ylabel("Recall@K")
    axes.set_title("Stage 1: recall of each candidate source")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(out_dir / RECALL_PNG, dpi=110)
    plt.close(figure)
    written.append(out_dir / RECALL_PNG)

    if "stage2" in summary:
        figure, axes = plt.subplots(figsize=(7, 4.5))
        ranked = sorted(summary["stage2"].items(), key=lambda kv: -kv[1][f"ndcg@{STAGE2_K}"])
        axes.bar([n for n, _ in ranked], [m[f"ndcg@{STAGE2_K}"] for _, m in ranked])
        axes.set_ylabel(f"NDCG@{STAGE2_K}")
        axes.set_title("Stage 2: ordering the union of candidates")
        axes.grid(axis="y", alpha=0.3)
        figure.tight_layout()
        figure.savefig(out_dir / NDCG_PNG, dpi=110)
        plt.close(figure)
        written.append(out_dir / NDCG_PNG)
    return written
