from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from openblip.data.scene import SceneGraph
from openblip.data.synthetic import (
    NAMED_SIZES,
    Split,
    SynthConfig,
    SynthSize,
    make_example,
    render_example,
    write_benchmark,
)
from openblip.data.webdataset import iter_shards
from openblip.evaluate.scene_f1 import scene_attribute_f1

TINY = SynthConfig(size=SynthSize(train=3, web=6, test=2), image_size=48, web_noise=0.5, seed=1, samples_per_shard=4)


def _tars(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("*/*.tar"))}


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    write_benchmark(tmp_path / "a", TINY)
    write_benchmark(tmp_path / "b", TINY)
    write_benchmark(tmp_path / "c", SynthConfig(TINY.size, TINY.image_size, TINY.web_noise, 2, TINY.samples_per_shard))
    a, b, c = _tars(tmp_path / "a"), _tars(tmp_path / "b"), _tars(tmp_path / "c")
    assert list(a) == ["test/00000.tar", "train/00000.tar", "web/00000.tar", "web/00001.tar"]
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_examples_do_not_depend_on_split_sizes_or_order() -> None:
    first = [make_example(5, Split.TRAIN, i, 64) for i in range(3)]
    again = [make_example(5, Split.TRAIN, i, 64) for i in reversed(range(3))][::-1]
    assert first == again
    assert render_example(5, first[1]) == render_example(5, again[1])
    assert render_example(5, first[1]) != render_example(6, first[1])  # pixels follow the seed too
    assert make_example(5, Split.TEST, 1, 64) != first[1]  # splits are different images


def test_manifest_and_layout(bench_dir: Path, bench_config: SynthConfig) -> None:
    manifest = json.loads((bench_dir / "manifest.json").read_text())
    assert manifest["config"]["seed"] == bench_config.seed
    assert manifest["config"]["web_noise"] == bench_config.web_noise
    assert {k: v["images"] for k, v in manifest["splits"].items()} == {"train": 20, "web": 40, "test": 10}
    assert {k: v["shards"] for k, v in manifest["splits"].items()} == {"train": 3, "web": 5, "test": 2}
    assert "circle" in manifest["vocabulary"]["shapes"]
    assert sorted(p.name for p in bench_dir.iterdir()) == ["manifest.json", "test", "train", "web"]
    for split, n in (("train", 20), ("web", 40), ("test", 10)):
        total = 0
        for tar_path in sorted((bench_dir / split).glob("*.tar")):
            stem = tar_path.stem
            rows = pq.read_table(tar_path.with_suffix(".parquet")).to_pylist()
            stats = json.loads((bench_dir / split / f"{stem}_stats.json").read_text())
            assert stats["successes"] == len(rows)
            with tarfile.open(tar_path) as tar:
                names = tar.getnames()
                assert names == [f"{r['key']}.{e}" for r in rows for e in ("jpg", "txt", "json")]
                for r in rows:
                    assert len(r["key"]) == 9 and r["key"].isdigit()
                    assert int(r["key"]) // 10 == int(stem)  # 8 per shard: key = shard * 10 + index
                    meta = json.loads(tar.extractfile(f"{r['key']}.json").read())  # type: ignore[union-attr]
                    assert tar.extractfile(f"{r['key']}.txt").read().decode() == r["caption"]  # type: ignore[union-attr]
                    assert meta["caption"] == r["caption"] and meta["split"] == split
                    assert (r["status"], r["width"], r["height"]) == ("success", 64, 64)
                    assert json.loads(r["meta"])["noise"] == meta["noise"]
            total += len(rows)
        assert total == n


def test_train_and_test_texts_are_complete_references(bench_dir: Path) -> None:
    for split in ("train", "test"):
        samples = list(iter_shards(bench_dir / split))
        assert [s.meta["index"] for s in samples] == list(range(len(samples)))
        for s in samples:
            scene = SceneGraph.from_json(s.meta["scene"])
            refs = s.meta["references"]
            assert s.text == refs[0] and len(refs) == 5 and s.meta["noise"] == "clean"
            assert scene_attribute_f1(refs[0], scene).recall == 1.0
            assert all(scene_attribute_f1(r, scene).precision == 1.0 for r in refs)
            assert s.meta["qa"] and {"question", "answer", "type"} == set(s.meta["qa"][0])


def test_web_noise_rate_and_labels(bench_dir: Path) -> None:
    samples = list(iter_shards(bench_dir / "web"))
    labels = Counter(s.meta["noise"] for s in samples)
    assert len(samples) == 40 and labels["clean"] == 40 - round(0.4 * 40)
    assert {k: labels[k] for k in ("other_image", "attribute_swap", "generic", "truncated")} == dict.fromkeys(
        ("other_image", "attribute_swap", "generic", "truncated"), 4
    )
    for s in samples:
        scene, refs, text, noise = SceneGraph.from_json(s.meta["scene"]), s.meta["references"], s.text, s.meta["noise"]
        assert text is not None
        if noise == "clean":
            assert text in refs and scene_attribute_f1(text, scene).precision == 1.0
            continue
        assert text not in refs, (noise, text)
        if noise in ("other_image", "attribute_swap"):
            assert scene_attribute_f1(text, scene).precision < 1.0, (noise, text)
        elif noise == "generic":
            assert scene_attribute_f1(text, scene) == (0.0, 0.0, 0.0), text
        else:
            prefix = text.removesuffix("...")
            assert any(r.startswith(prefix) and len(prefix) < len(r) for r in refs), text


def test_refuses_existing_output(bench_dir: Path, bench_config: SynthConfig) -> None:
    with pytest.raises(FileExistsError, match=r"manifest\.json"):
        write_benchmark(bench_dir, bench_config)


def test_an_interrupted_write_is_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import openblip.data.synthetic as synthetic

    clean = tmp_path / "clean"
    write_benchmark(clean, TINY)
    broken = tmp_path / "broken"
    real = synthetic._write_split

    def killed_during_web(out: Path, config: SynthConfig, split: Split) -> object:
        if split is Split.WEB:
            (out / "web").mkdir()
            (out / "web" / ".00000.tar.tmp").write_bytes(b"half a shard")
            raise KeyboardInterrupt
        return real(out, config, split)

    monkeypatch.setattr(synthetic, "_write_split", killed_during_web)
    with pytest.raises(KeyboardInterrupt):
        write_benchmark(broken, TINY)
    monkeypatch.undo()
    assert (broken / "train").is_dir() and not (broken / "manifest.json").exists()
    write_benchmark(broken, TINY)  # the rerun writes it all again
    assert _tars(broken) == _tars(clean)
    assert sorted(p.name for p in broken.rglob("*")) == sorted(p.name for p in clean.rglob("*"))
    # a split directory the writer did not start is someone else's: still refused
    other = tmp_path / "other"
    (other / "train").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="train"):
        write_benchmark(other, TINY)


def test_sizes() -> None:
    assert SynthSize.from_total(50) == SynthSize(train=23, web=22, test=5)
    assert SynthSize.from_total(2) == SynthSize(train=1, web=1, test=0)
    assert sum(vars(SynthSize.from_total(1001)).values()) == 1001
    assert NAMED_SIZES["ci"].train < NAMED_SIZES["small"].train < NAMED_SIZES["bench"].train
    with pytest.raises(ValueError, match=">= 1"):
        SynthSize.from_total(0)
    with pytest.raises(ValueError, match="web_noise"):
        SynthConfig(web_noise=1.5)
