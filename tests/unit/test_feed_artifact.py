"""The feed reranker's artifact: a round trip scores the same, and every bad file is refused."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from xgboost import XGBRanker

from app.features.files import ArtifactError, write_checksummed
from app.feed import artifact
from app.feed.artifact import (
    MAGIC,
    TRAIN_HINT,
    RankerError,
    checksum_path,
    load_ranker,
    save_ranker,
)

ROOT = Path(__file__).resolve().parent.parent.parent
FEATURES = ("cf_score", "cf_rank", "distance_km", "language_match")


@pytest.fixture(scope="module")
def fitted() -> tuple[XGBRanker, np.ndarray]:
    """A tiny LambdaRank model: 30 queries of 8 candidates, labels from the features."""
    rng = np.random.default_rng(7)
    features = rng.random((240, len(FEATURES))).astype(np.float32)
    labels = np.clip((features[:, 0] * 3 + features[:, 3]).astype(int), 0, 3)
    groups = np.repeat(np.arange(30), 8)
    model = XGBRanker(objective="rank:ndcg", n_estimators=8, max_depth=3, random_state=0)
    model.fit(features, labels, qid=groups)
    return model, features


def _json(model: XGBRanker) -> bytes:
    return bytes(model.get_booster().save_raw("json"))


def _metadata(**metadata: object) -> dict[str, object]:
    return {
        "feature_names": list(FEATURES),
        "data_hash": "ab" * 32,
        "versions": {"xgboost": "3.2.0"},
        "metrics": {"ndcg@10": 0.5},
        "candidate_model": "lightgcn-20261201T2300Z-1a2b3c4d",
        "created_at": "2026-12-01T23:00:00Z",
        **metadata,
    }


@pytest.fixture
def saved(fitted: tuple[XGBRanker, np.ndarray], tmp_path: Path) -> Path:
    path = tmp_path / "feed_ranker.bin"
    save_ranker(_json(fitted[0]), _metadata(), path)
    return path


def _refused(path: Path, message: str, features: tuple[str, ...] = FEATURES) -> RankerError:
    with pytest.raises(RankerError, match=message) as caught:
        load_ranker(path, features)
    assert str(caught.value).endswith(TRAIN_HINT)
    return caught.value


def _rewrite(path: Path, payload: bytes) -> None:
    """Replace the artifact with `payload` and a checksum that matches it."""
    write_checksummed(path, payload)


def _header(path: Path) -> tuple[dict[str, object], bytes]:
    data = path.read_bytes()
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    start = len(MAGIC) + 4
    return json.loads(data[start : start + length]), data[start + length :]


def _pack(header: dict[str, object], booster: bytes) -> bytes:
    encoded = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(encoded)) + encoded + booster


def test_round_trip_scores_as_xgboost_does(
    fitted: tuple[XGBRanker, np.ndarray], saved: Path
) -> None:
    model, features = fitted
    ranker = load_ranker(saved, FEATURES)
    # float32 sums in another order: equal to rounding (tests/unit/test_feed_forest.py).
    np.testing.assert_allclose(ranker.score(features), model.predict(features), atol=1e-6)
    assert ranker.feature_names == FEATURES
    assert ranker.metadata["candidate_model"] == "lightgcn-20261201T2300Z-1a2b3c4d"
    assert ranker.metadata["sha256"] == checksum_path(saved).read_text().split()[0]
    assert checksum_path(saved).read_text() == f"{ranker.metadata['sha256']}  feed_ranker.bin\n"
    assert ranker.score(features[:0]).shape == (0,)
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        ranker.score(features[:, :3])


def test_the_file_is_a_json_header_and_the_json_booster(
    fitted: tuple[XGBRanker, np.ndarray], saved: Path, tmp_path: Path
) -> None:
    header, booster = _header(saved)
    assert header["format"] == artifact.FORMAT == 2
    assert isinstance(header["metadata"], dict)
    assert header["metadata"]["feature_names"] == list(FEATURES)
    assert "sha256" not in header["metadata"]
    assert booster == _json(fitted[0])
    assert saved.read_bytes()[:8] == b"HTRANKER"
    # XGBoost itself reads the stored booster back.
    from xgboost import Booster

    again = Booster()
    again.load_model(bytearray(booster))
    np.testing.assert_array_equal(
        again.inplace_predict(fitted[1]), fitted[0].get_booster().inplace_predict(fitted[1])
    )


def test_save_returns_what_load_reads(fitted: tuple[XGBRanker, np.ndarray], tmp_path: Path) -> None:
    path = tmp_path / "r.bin"
    written = save_ranker(_json(fitted[0]), _metadata(), path)
    read = load_ranker(path, FEATURES)
    assert written.metadata == read.metadata
    np.testing.assert_array_equal(written.score(fitted[1]), read.score(fitted[1]))


def test_save_replaces_in_place(fitted: tuple[XGBRanker, np.ndarray], saved: Path) -> None:
    save_ranker(_json(fitted[0]), _metadata(note="retrained"), saved)
    assert load_ranker(saved, FEATURES).metadata["note"] == "retrained"
    assert sorted(p.name for p in saved.parent.iterdir()) == [
        "feed_ranker.bin",
        "feed_ranker.bin.sha256",
    ]


def test_refuses_a_missing_file(tmp_path: Path) -> None:
    error = _refused(tmp_path / "nowhere.bin", "no feed reranker at")
    assert isinstance(error, ArtifactError)
    assert TRAIN_HINT == "train one with `uv run python -m ml feed train`"


def test_refuses_a_missing_checksum(saved: Path) -> None:
    checksum_path(saved).unlink()
    _refused(saved, "has no readable checksum file feed_ranker.bin.sha256")


def test_refuses_a_flipped_byte(saved: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0x01
    saved.write_bytes(bytes(data))
    _refused(saved, "does not match its checksum")


def test_refuses_another_format_version(saved: Path) -> None:
    header, booster = _header(saved)
    _rewrite(saved, _pack({**header, "format": 1}, booster))
    _refused(saved, "has feed reranker format 1, this code reads 2")


def test_refuses_other_features(saved: Path) -> None:
    other = (*FEATURES[:-1], "something_else")
    _refused(saved, r"was trained on features \[.*'language_match'\], but this code builds", other)
    _refused(saved, "but this code builds", FEATURES[:3])


@pytest.mark.parametrize(
    "payload",
    [b"", b"PK\x03\x04 a zip", MAGIC + struct.pack("<I", 3) + b"{x}", MAGIC + b"\x01"],
    ids=["empty", "zip", "bad-json", "truncated"],
)
def test_refuses_a_file_that_is_not_a_ranker(saved: Path, payload: bytes) -> None:
    _rewrite(saved, payload)
    _refused(saved, "is not a Hometown feed reranker")


def test_refuses_a_booster_that_is_not_json(
    fitted: tuple[XGBRanker, np.ndarray], saved: Path
) -> None:
    header, booster = _header(saved)
    _rewrite(saved, _pack(header, booster[: len(booster) // 2]))
    _refused(saved, "the booster of the feed reranker .* is not JSON")
    # Format 1's UBJSON booster, under a header claiming format 2.
    _rewrite(saved, _pack(header, bytes(fitted[0].get_booster().save_raw("ubj"))))
    _refused(saved, "is not JSON")


def test_refuses_a_booster_the_server_cannot_score(saved: Path) -> None:
    header, booster = _header(saved)
    model = json.loads(booster)
    model["learner"]["objective"]["name"] = "binary:logistic"
    _rewrite(saved, _pack(header, json.dumps(model).encode()))
    _refused(saved, "is not one the server can score .*not a ranking objective")


def test_refuses_a_booster_of_another_width(
    fitted: tuple[XGBRanker, np.ndarray], saved: Path
) -> None:
    header, _ = _header(saved)
    features = fitted[1]
    narrow = XGBRanker(objective="rank:ndcg", n_estimators=2).fit(
        features[:, :3], np.arange(240) % 2, qid=np.repeat(np.arange(30), 8)
    )
    _rewrite(saved, _pack(header, _json(narrow)))
    _refused(saved, "has a booster for 3 features but lists 4")


def test_save_refuses_what_load_would_refuse(
    fitted: tuple[XGBRanker, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "r.bin"
    model = _json(fitted[0])
    with pytest.raises(ValueError, match="needs feature_names"):
        save_ranker(model, _metadata(feature_names=[]), path)
    with pytest.raises(ValueError, match="the booster takes 4 features but feature_names lists 3"):
        save_ranker(model, _metadata(feature_names=list(FEATURES[:3])), path)
    with pytest.raises(ValueError, match="not plain JSON"):
        save_ranker(model, _metadata(metrics={"ndcg@10": float("nan")}), path)
    with pytest.raises(ValueError, match="not a ranking objective"):
        save_ranker(model.replace(b'"rank:ndcg"', b'"reg:logistic"'), _metadata(), path)
    assert list(tmp_path.iterdir()) == []


def test_the_server_scores_without_xgboost_scipy_pandas_or_scikit_learn(saved: Path) -> None:
    """Under app/lean.py's import guard, loading and scoring work without importing
    XGBoost, SciPy, pandas or scikit-learn, and scikit-learn (the click model's)
    still imports after."""
    script = (
        "import sys\n"
        "from app.lean import refuse_offline_imports\n"
        "refuse_offline_imports()\n"
        "import numpy as np\n"
        "from app.feed.artifact import load_ranker\n"
        f"ranker = load_ranker(sys.argv[1], {list(FEATURES)!r})\n"
        "scores = ranker.contributions(np.zeros((2, 4))).shape\n"
        "print(ranker.score(np.zeros((2, 4))).shape, scores,"
        " *(name in sys.modules for name in ('xgboost', 'scipy', 'pandas', 'sklearn')))\n"
        "import sklearn.linear_model\n"
        "print('sklearn' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(saved)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(2,)", "(2,", "5)", *["False"] * 4, "True"]
