"""`openblip eval` end to end: JSON on stdout (rounded), a human summary and progress lines on
stderr, --output, --report (an HTML page checked in headless Chromium), the deprecated --beams,
and data without what the task needs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openblip.cli import main
from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("eval_scenes")
    write_benchmark(out, SynthConfig(size=SynthSize(train=0, web=0, test=4), image_size=32, seed=3))
    return str(out / "test")


def _no_float_noise(value: object) -> None:
    """Every number of the JSON has at most 4 decimals (no 18.599999999999998)."""
    if isinstance(value, dict):
        for v in value.values():
            _no_float_noise(v)
    elif isinstance(value, float):
        assert len(repr(value).split(".")[-1]) <= 4, value


def test_retrieval_json_summary_progress_and_report(cli, models, split, tmp_path) -> None:
    report = tmp_path / "r.html"
    r = cli("eval", "--model", models["full"], "--data", split, "--task", "retrieval", "--k-test", "3", "--report",
            str(report))  # fmt: skip
    assert r.code == 0, r.stderr
    out = json.loads(r.stdout)
    m = out["metrics"]
    assert out["items"] == 4 and m["images"] == 4 and isinstance(m["images"], int) and m["texts"] == 20
    assert m["chance_r1"] == 25.0 and 0.0 <= m["txt_r1"] <= 100.0
    _no_float_noise(out)
    err = r.stderr
    # progress: stderr is not a terminal, so a line per stage (at its end at least)
    for stage in ("encode images 4/4", "rerank texts per image 4/4", "rerank images per text 20/20"):
        assert f"eval retrieval: {stage} (100%)" in err, err
    assert f"openblip eval: retrieval on 4 images and 20 captions from {split}" in err
    assert re.search(r"image -> text: R@1 \d+\.\d%  R@5 \d+\.\d%  R@10 \d+\.\d%", err), err
    assert "chance R@1: 25.0% image -> text, 25.0% text -> image" in err  # 5 of the 20 captions are an image's
    assert "results: JSON on stdout" in err and f"report: {report}" in err and "openblip eval --help" in err
    page = report.read_text()
    assert "image -&gt; text" in page and "text -&gt; image" in page and "top hits:" in page
    # every caption query lists its image among its hits (4 images, 5 shown): 20 correct marks at least
    assert page.count('class="ok"') >= 20


def test_caption_report_renders_in_chromium(cli, models, split, tmp_path, browser) -> None:
    report, output = tmp_path / "report.html", tmp_path / "eval.json"
    r = cli(
        "eval", "--model", models["full"], "--data", split, "--task", "caption", "--beams", "2", "--max-length", "8",
        "--captions", "--report", str(report), "--output", str(output),
    )  # fmt: skip
    assert r.code == 0, r.stderr
    assert "--beams is deprecated; use --num-beams" in r.stderr
    assert r.stdout == "" and oct(output.stat().st_mode & 0o777) == "0o644" and oct(report.stat().st_mode)[-3:] == "644"
    out = json.loads(output.read_text())
    captions = out["captions"]
    assert len(captions) == 4 and {"BLEU-4", "CIDEr", "attribute_f1", "shuffled_f1"} <= set(out["metrics"])
    _no_float_noise(out)
    assert "captions for 4 images (beam search, 2 beams), scored against 20 reference captions" in r.stderr
    assert "baseline, captions of the wrong image: F1" in r.stderr
    assert f"results: {output}" in r.stderr and f"report: {report}" in r.stderr

    page = report.read_text()
    assert "<script" not in page and "http" not in page  # self-contained: nothing fetched
    assert page.count('src="data:image/jpeg;base64,') == 3 * 4  # every item, and the worst 4 and best 4 of 4
    # The page has no script; the test adds one to a copy to count the images the browser decoded.
    probe = tmp_path / "probe.html"
    count = (
        "<script>addEventListener('load',()=>{const i=[...document.images];"
        "document.body.dataset.decoded=i.filter(x=>x.complete&&x.naturalWidth>0).length;"
        "document.body.dataset.total=i.length;});</script>"
    )
    probe.write_text(page.replace("</body>", count + "</body>"))
    rendered = browser.render(probe, tmp_path / "shot.png", height=1600)
    decoded = re.search(r'data-decoded="(\d+)" data-total="(\d+)"', rendered.dom)
    assert decoded and decoded.group(1) == decoded.group(2) and int(decoded.group(2)) == 12, rendered.dom[:500]
    for key, caption in captions.items():
        assert key in rendered.dom and caption in rendered.dom
    assert "worst 4 by CIDEr" in rendered.dom and "best 4 by CIDEr" in rendered.dom and "references:" in rendered.dom
    shot = np.asarray(Image.open(rendered.screenshot).convert("RGB"), dtype=np.int16)
    assert shot.std() > 10  # not a blank page: text and thumbnails drawn
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 200  # photos, not only text colours


def test_vqa_summary_names_the_baseline_and_report_lists_questions(cli, models, split, tmp_path) -> None:
    report = tmp_path / "vqa.html"
    r = cli("eval", "--model", models["vqa"], "--data", split, "--task", "vqa", "--report", str(report))
    assert r.code == 0, r.stderr
    m = json.loads(r.stdout)["metrics"]
    assert isinstance(m["questions"], int) and m["questions"] > 4
    assert f"VQA on {m['questions']} questions about 4 images" in r.stderr
    assert "baseline, always answering the commonest answer" in r.stderr
    page = report.read_text()
    assert page.count("<div>Q: ") == m["questions"] + 2 * min(5, m["questions"])


@pytest.fixture
def photos(images, tmp_path) -> str:
    """An image folder: images without captions or questions."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in images:
        (folder / Path(p).name).write_bytes(Path(p).read_bytes())
    return str(folder)


def test_data_without_references_is_a_usage_error(cli, models, photos) -> None:
    r = cli("eval", "--model", models["full"], "--data", photos, "--task", "caption")
    assert r.code == 2 and r.stdout == "", r.stderr
    assert "--task caption needs reference captions" in r.stderr and ".txt caption beside each image" in r.stderr


@pytest.mark.parametrize(
    ("task", "extra", "message"),
    [
        ("retrieval", [], "--task retrieval needs reference captions"),
        ("vqa", [], "--task vqa needs questions with answers"),
        ("caption", ["--report", "r.pdf"], "--report r.pdf: use a .html or .htm file name"),
        ("caption", ["--output", "out.jsonl"], "--output out.jsonl: use a .json file name"),
        ("caption", ["--num-beams", "0"], "--num-beams >= 1"),
    ],
)
def test_usage_errors_before_any_work(models, photos, task, extra, message, capsys) -> None:
    assert main(["eval", "--model", models["full"], "--data", photos, "--task", task, *extra]) == 2
    assert message in capsys.readouterr().err
