"""The filter's precision and recall at finding the noisy web texts, with a model trained by
`openblip train`: the shipped demo filter (`synthetic-filter`, configs/demo_pretrain.toml, trained
on the clean split of seed 100), auditing a fresh web split (seed 9004, never used in training)
with `captioner=None`. 40% of the split's web texts are noisy, so a filter that drops texts at
random has precision 0.4 at any recall; the thresholds below sit a little under the figures this
model gave on this split (README "Shipped demo models" records the larger seed-9000 measurement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openblip.bootstrap.config import BootstrapConfig
from openblip.bootstrap.run import bootstrap
from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark

SPLIT = SynthConfig(size=SynthSize(train=0, web=200, test=0), seed=9004, samples_per_shard=100)
CHANCE_PRECISION = 0.4  # SPLIT's web_noise
# Measured 2026-12-03: precision 0.64, recall 0.91; dropped: other_image 20/20, generic 20/20,
# truncated 19/20, attribute_swap 14/20, clean 41/120 (the filter's weakness: README)
PRECISION, RECALL, CLEAN_DROPPED = 0.55, 0.8, 0.45
PER_TYPE = {"other_image": 0.9, "generic": 0.9, "truncated": 0.8, "attribute_swap": 0.5}


@pytest.fixture(scope="module")
def stats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("filter_quality")
    write_benchmark(root / "bench", SPLIT)
    cfg = BootstrapConfig(out=str(root / "out"), filter="synthetic-filter", captioner=None, device="cpu", workers=0)
    result = bootstrap(cfg, [str(root / "bench" / "web")])
    assert result.exit_code == 0
    assert Path(result.out, "report.html").is_file()
    return result.stats


def test_the_trained_filter_finds_the_noisy_web_texts(stats: dict[str, Any]) -> None:
    noise = stats["noise"]
    assert (noise["noisy"], noise["clean"]) == (80, 120)
    assert noise["precision"] >= PRECISION >= CHANCE_PRECISION + 0.15
    assert noise["recall"] >= RECALL
    by_type = noise["by_type"]
    assert by_type["clean"]["dropped_share"] <= CLEAN_DROPPED
    for kind, least in PER_TYPE.items():
        assert by_type[kind]["dropped_share"] >= least, (kind, by_type[kind])
