"""The local engine end to end, in process (bootstrap/run.py, pipeline.py, shard.py)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch

from openblip.bootstrap import BootstrapConfig, CaptionSettings, bootstrap
from openblip.bootstrap.shard import SCORES_SCHEMA
from openblip.data.webdataset import iter_shards


def rows(out: Path) -> list[dict[str, Any]]:
    return [r for p in sorted((out / "scores").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def members(out: Path) -> dict[str, list[tuple[str, bytes]]]:
    got = {}
    for p in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(p) as tar:
            got[p.name] = [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    return got


def assert_same_rows(a: list[dict[str, Any]], b: list[dict[str, Any]], tol: float = 1e-5) -> None:
    """Texts, keep decisions and errors equal; scores equal up to float rounding of other batchings."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for k in ("key", "shard", "web_text", "web_kept", "synthetic_texts", "synthetic_kept", "error", "meta"):
            assert x[k] == y[k], (k, x["key"])
        for k in ("web_itm", "web_itc"):
            assert (x[k] is None) == (y[k] is None) and (x[k] is None or abs(x[k] - y[k]) <= tol), (k, x["key"])
        for k in ("synthetic_itm", "synthetic_itc"):
            assert x[k] == pytest.approx(y[k], abs=tol), (k, x["key"])


def config(out: Path, models: dict[str, str], **kw: Any) -> BootstrapConfig:
    base: dict[str, Any] = dict(
        out=str(out), filter=models["full"], captioner=models["full"], device="cpu", workers=0, batch_size=3
    )
    return BootstrapConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, models: dict[str, str], web_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests (conftest): tiny models, and the same float rounding
    try:
        result = bootstrap(config(out, models), [str(web_dir)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0
    return out


def test_outputs(reference: Path, web_dir: Path) -> None:
    got = rows(reference)
    assert len(got) == 12 and {r["shard"] for r in got} == {"00000", "00001", "00002"}
    assert pq.read_schema(reference / "scores" / "00000.parquet").names == SCORES_SCHEMA.names
    inputs = {s.key: s for s in iter_shards(web_dir)}
    for r in got:
        assert r["error"] is None and r["web_text"] == inputs[r["key"]].text
        assert json.loads(r["meta"]) == inputs[r["key"]].meta
        assert len(r["synthetic_texts"]) == len(r["synthetic_itm"]) == len(r["synthetic_kept"]) == 1
        assert r["web_kept"] == (r["web_itm"] > 0.5)
        assert r["synthetic_kept"] == [p is not None and p > 0.5 for p in r["synthetic_itm"]]
    # kept shards: every kept text once, with the input's image bytes unchanged, readable as training data
    kept = [(r["key"], "web", r["web_text"]) for r in got if r["web_kept"]] + [
        (r["key"], "synthetic", t) for r in got for t, k in zip(r["synthetic_texts"], r["synthetic_kept"]) if k
    ]
    samples = list(iter_shards(reference / "shards"))
    assert sorted((s.meta["key"], s.meta["source"], s.text) for s in samples) == sorted(kept)
    assert all(s.image_bytes == inputs[s.meta["key"]].image_bytes for s in samples)
    stats = json.loads((reference / "stats.json").read_text())
    assert stats["samples"] == 12 and stats["errors"]["total"] == 0
    assert stats["web"]["kept"] + stats["web"]["dropped"] == 12
    assert stats["synthetic"]["kept"] == sum(r["synthetic_kept"].count(True) for r in got)
    assert stats["kept_pairs"] == len(samples)
    assert stats["noise"]["noisy"] + stats["noise"]["clean"] == 12
    assert set(stats["throughput"]["samples_per_s"]) == {"decode", "caption", "filter", "end_to_end"}
    assert (reference / "report.html").stat().st_size > 1000


def test_same_rows_at_any_batch_size_and_worker_count(
    reference: Path, models: dict[str, str], web_dir: Path, tmp_path: Path
) -> None:
    bootstrap(config(tmp_path / "b", models, batch_size=5, workers=1), [str(web_dir)])
    assert_same_rows(rows(tmp_path / "b"), rows(reference))


def test_rerun_skips_finished_shards_and_limit_resumes(
    models: dict[str, str], web_dir: Path, tmp_path: Path, reference: Path
) -> None:
    out = tmp_path / "o"
    first = bootstrap(config(out, models, limit=6), [str(web_dir)])
    assert first.stats["samples"] == 6 and first.stats["shards"]["cut_by_limit"] == 1
    assert first.stats["shards"]["failed"][0]["error"] == "not processed"  # the third shard
    done = (out / "done" / "00000.json").stat().st_mtime_ns
    second = bootstrap(config(out, models), [str(web_dir)])
    assert (out / "done" / "00000.json").stat().st_mtime_ns == done  # finished: not redone
    assert second.exit_code == 0 and second.stats["samples"] == 12
    assert_same_rows(rows(out), rows(reference), tol=0.0)
    assert members(out) == members(reference)
    with pytest.raises(ValueError, match="threshold"):
        bootstrap(config(out, models, threshold=0.7), [str(web_dir)])


def test_audit_without_captioner(models: dict[str, str], web_dir: Path, tmp_path: Path) -> None:
    result = bootstrap(config(tmp_path / "a", models, captioner=None, filter=models["retrieval"]), [str(web_dir)])
    got = rows(tmp_path / "a")
    assert result.stats["synthetic"] == {"kept": 0, "dropped": 0}
    assert all(r["synthetic_texts"] == [] for r in got) and all(r["web_itm"] is not None for r in got)


def test_unusable_models_are_refused(models: dict[str, str], web_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--filter .*ITM"):
        bootstrap(config(tmp_path / "x", models, filter=models["caption"]), [str(web_dir)])
    with pytest.raises(ValueError, match=r"--captioner .*text decoder"):
        bootstrap(config(tmp_path / "y", models, captioner=models["retrieval"]), [str(web_dir)])
    with pytest.raises(ValueError, match="top_p"):
        config(tmp_path / "z", models, caption=CaptionSettings(top_p=1.5))


def test_two_names_of_one_checkpoint_share_one_model(models: dict[str, str], tmp_path: Path) -> None:
    from openblip.bootstrap.pipeline import load_scorer

    alias = tmp_path / "alias"
    alias.symlink_to(models["full"], target_is_directory=True)
    scorer = load_scorer(config(tmp_path / "o", models, captioner=str(alias)))
    assert scorer.shared and scorer.captioner is scorer.filter
    assert not load_scorer(config(tmp_path / "o", models, captioner=models["caption"])).shared


def test_kept_shards_are_training_data(
    reference: Path, tiny_train_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`openblip train --set data.train=DIR/shards` trains on the kept pairs as they are."""
    from openblip.cli import main

    pairs = json.loads((reference / "stats.json").read_text())["kept_pairs"]
    assert pairs >= 8  # two batches of the tiny config's 4
    sets = [f"data.train={reference / 'shards'}", f"run.out_dir={tmp_path / 'run'}", "schedule.max_steps=2"]
    assert main(["train", str(tiny_train_config), *(a for s in sets for a in ("--set", s))]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and Path(summary["model"]).is_dir()
