"""Which texts each arm's training set holds: the clean split always, and from the web split the
raw alt-texts (no CapFilt), the kept ones (filter only), all texts plus every caption (captioner
only), or the kept texts and kept captions (captioner + filter, nucleus or beam)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openblip.data.formats import iter_samples
from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark
from openblip.reproduce.arms import (
    ALL_ARMS,
    Arm,
    BootstrapRun,
    Pair,
    ScoreRow,
    arm_pairs,
    arms_needing,
    pair_texts,
    read_score_rows,
    write_arm_data,
)

ROW = ScoreRow(
    key="k", web_text="web", web_kept=False, synthetic_texts=("cap a", "cap b"), synthetic_kept=(True, False)
)


@pytest.mark.parametrize(
    ("arm", "expected"),
    [
        (Arm.NO_CAPFILT, [Pair("raw", "web")]),
        (Arm.FILTER_ONLY, []),
        (Arm.CAPTIONER_ONLY, [Pair("web", "web"), Pair("cap a", "synthetic"), Pair("cap b", "synthetic")]),
        (Arm.CAPTIONER_FILTER, [Pair("cap a", "synthetic")]),
        (Arm.CAPTIONER_FILTER_BEAM, [Pair("cap a", "synthetic")]),
    ],
)
def test_arm_pairs_of_a_dropped_web_text(arm: Arm, expected: list[Pair]) -> None:
    assert arm_pairs(arm, "raw", None if arm is Arm.NO_CAPFILT else ROW) == expected


def test_arm_pairs_of_a_kept_web_text_and_an_unusable_sample() -> None:
    kept = ScoreRow(key="k", web_text="web", web_kept=True, synthetic_texts=("  ",), synthetic_kept=(True,))
    assert arm_pairs(Arm.FILTER_ONLY, "raw", kept) == [Pair("web", "web")]
    assert arm_pairs(Arm.CAPTIONER_FILTER, "raw", kept) == [Pair("web", "web")]  # an empty caption is no pair
    assert arm_pairs(Arm.CAPTIONER_FILTER, "raw", None) == []  # bootstrap could not use the sample


def test_each_bootstrap_run_is_needed_once() -> None:
    assert arms_needing(ALL_ARMS) == [BootstrapRun.FILTER, BootstrapRun.NUCLEUS, BootstrapRun.BEAM]
    assert arms_needing([Arm.NO_CAPFILT, Arm.CAPTIONER_ONLY, Arm.CAPTIONER_FILTER]) == [BootstrapRun.NUCLEUS]
    assert [a.bootstrap for a in (Arm.CAPTIONER_ONLY, Arm.CAPTIONER_FILTER)] == [BootstrapRun.NUCLEUS] * 2


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("arms") / "bench"
    write_benchmark(out, SynthConfig(SynthSize(train=3, web=6, test=1), image_size=64, web_noise=0.5, seed=3))
    return out


def _rows(bench: Path) -> dict[str, ScoreRow]:
    """Web sample i: its text kept when i is even; one caption per image, kept when i % 3 == 0."""
    rows = {}
    for i, s in enumerate(iter_samples(bench / "web")):
        rows[s.key] = ScoreRow(s.key, s.text or "", i % 2 == 0, (f"caption {i}",), (i % 3 == 0,))
    return rows


def test_written_training_sets_hold_the_arms_texts(bench: Path, tmp_path: Path) -> None:
    web = list(iter_samples(bench / "web"))
    clean = [("clean", s.text) for s in iter_samples(bench / "train")]
    rows = _rows(bench)
    expected = {
        Arm.NO_CAPFILT: [("web", s.text) for s in web],
        Arm.FILTER_ONLY: [("web", s.text) for i, s in enumerate(web) if i % 2 == 0],
        Arm.CAPTIONER_ONLY: [p for i, s in enumerate(web) for p in (("web", s.text), ("synthetic", f"caption {i}"))],
        Arm.CAPTIONER_FILTER: [
            p
            for i, s in enumerate(web)
            for p in ([("web", s.text)] if i % 2 == 0 else []) + ([("synthetic", f"caption {i}")] if i % 3 == 0 else [])
        ],
    }
    for arm, web_pairs in expected.items():
        out = tmp_path / arm.value
        summary = write_arm_data(out, arm, bench / "train", bench / "web", None if arm is Arm.NO_CAPFILT else rows, 4)
        assert pair_texts(out) == clean + web_pairs, arm
        assert summary["pairs"] == len(clean) + len(web_pairs)
        assert summary["clean"] == 3
        assert not out.with_name(out.name + ".tmp").exists()


def test_clean_samples_keep_their_references_and_web_pairs_do_not(bench: Path, tmp_path: Path) -> None:
    """data.random_reference draws among meta['references']: only clean images may have them,
    else a noisy web text would be swapped for a clean reference during training."""
    out = tmp_path / "arm"
    write_arm_data(out, Arm.NO_CAPFILT, bench / "train", bench / "web", None, 100)
    for s in iter_samples(out):
        if s.meta["source"] == "clean":
            assert len(s.meta["references"]) == 5
        else:
            assert "references" not in s.meta and s.meta["noise"] in {
                "clean",
                "other_image",
                "attribute_swap",
                "generic",
                "truncated",
            }


def test_a_killed_write_is_redone_whole(bench: Path, tmp_path: Path) -> None:
    out = tmp_path / "arm"
    stale = out.with_name("arm.tmp")
    stale.mkdir()
    (stale / "00000.tar").write_bytes(b"half a shard")
    write_arm_data(out, Arm.FILTER_ONLY, bench / "train", bench / "web", _rows(bench), 100)
    assert not stale.exists()
    assert len(pair_texts(out)) == 3 + 3
    with pytest.raises(ValueError, match="needs the scores"):
        write_arm_data(tmp_path / "x", Arm.FILTER_ONLY, bench / "train", bench / "web", None, 100)


def test_read_score_rows_skips_errored_samples(tmp_path: Path) -> None:
    (tmp_path / "scores").mkdir()
    table = pa.table(
        {
            "key": ["a", "b"],
            "web_text": ["t a", None],
            "web_kept": [True, None],
            "synthetic_texts": [["c1", "c2"], None],
            "synthetic_kept": [[False, True], None],
            "error": [None, "corrupt image"],
        }
    )
    pq.write_table(table, tmp_path / "scores" / "00000.parquet")
    assert read_score_rows(tmp_path) == {"a": ScoreRow("a", "t a", True, ("c1", "c2"), (False, True))}
    with pytest.raises(FileNotFoundError):
        read_score_rows(tmp_path / "nothing")
