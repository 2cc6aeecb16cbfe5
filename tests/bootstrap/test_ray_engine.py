"""`--engine ray` on a local Ray instance with 2 CPUs writes what the local engine writes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openblip.bootstrap import BootstrapConfig, RayOptions, bootstrap

from .test_pipeline import assert_same_rows, rows

ray = pytest.importorskip("ray", reason="Ray is the optional extra openblip[ray] (scripts/setup.sh installs it)")


@pytest.fixture(scope="session")
def local_ray() -> Iterator[RayOptions]:
    """One Ray start for the session (~25 s)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield RayOptions(num_cpus=2)
    ray.shutdown()


def _stats(out: Path) -> dict[str, Any]:
    stats = json.loads((out / "stats.json").read_text())
    stats.pop("throughput")
    stats.pop("histograms")  # a score that lands within float rounding of a bin edge may move
    return stats


def _heatmaps(out: Path) -> dict[tuple[str, str, str], str]:
    """(shard, key, which text) -> the heat map JPEG (base64) of each example in the done records."""
    records = [json.loads(p.read_text()) for p in sorted((out / "done").glob("*.json"))]
    return {
        (r["shard"], ex["key"], which): hm["jpeg"]
        for r in records
        for grid in r["examples"].values()
        for ex in grid
        for which, hm in ex["heatmaps"].items()
    }


@pytest.mark.parametrize("captioner", ["full", pytest.param("caption", marks=pytest.mark.slow)])
def test_ray_writes_what_local_writes(
    local_ray: RayOptions, models: dict[str, str], web_dir: Path, tmp_path: Path, captioner: str
) -> None:
    filt = models["full"] if captioner == "full" else models["retrieval"]
    base: dict[str, Any] = dict(filter=filt, captioner=models[captioner], device="cpu", workers=0, batch_size=3)
    local = bootstrap(BootstrapConfig(out=str(tmp_path / "local"), **base), [str(web_dir)])
    on_ray = bootstrap(BootstrapConfig(out=str(tmp_path / "ray"), **base), [str(web_dir)], ray=local_ray)
    assert local.exit_code == on_ray.exit_code == 0
    assert_same_rows(rows(tmp_path / "ray"), rows(tmp_path / "local"))
    assert _stats(tmp_path / "ray") == _stats(tmp_path / "local")
    names = sorted(p.name for p in (tmp_path / "ray" / "shards").glob("*.tar"))
    assert (
        names
        == sorted(p.name for p in (tmp_path / "local" / "shards").glob("*.tar"))
        == [
            "00000.tar",
            "00001.tar",
            "00002.tar",
        ]
    )
    # the report's heat maps are drawn on Ray too (by the driver's filter), the same pictures
    assert _heatmaps(tmp_path / "ray") == _heatmaps(tmp_path / "local") != {}
    # a rerun on Ray finds every shard done and changes nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*.parquet")}
    bootstrap(BootstrapConfig(out=str(tmp_path / "ray"), **base), [str(web_dir)], ray=local_ray)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*.parquet")} == before
