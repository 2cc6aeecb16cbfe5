"""`openblip eval --task vqa --vqa-rules`: which vqaEval.py version the accuracy follows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

import openblip.evaluate.harness
from openblip.checkpoint_io import save_pretrained
from openblip.cli import main
from openblip.model.blip import Blip
from openblip.tasks.vqa import Answer
from openblip.tokenizer import Tokenizer


def test_vqa_rules_option(
    tmp_path: Path,
    tiny_blip: Callable[[str, int], Blip],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The model answers "Two" and "yes" (fixed here, the point is the scoring): ten human "2"
    score 1 pre-2021 (the prediction is normalised) and 0 since 2021 (identical answers leave it
    as it is); eight "yes " and two "yes" score .6 pre-2021 (unstripped: 2 match) and 1 since."""
    model = save_pretrained(tiny_blip("vqa", 1), Tokenizer.default(), tmp_path / "model")
    Image.new("RGB", (32, 32), "red").save(tmp_path / "a.png")
    rows = [
        {"image": "a.png", "question": "how many?", "answers": ["2"] * 10},
        {"image": "a.png", "question": "is it red?", "answers": ["yes "] * 8 + ["yes"] * 2},
    ]
    split = tmp_path / "split.jsonl"
    split.write_text("".join(json.dumps(r) + "\n" for r in rows))
    given = {"how many?": "Two", "is it red?": "yes"}

    def answer_questions(model, tokenizer, pixels, questions, cfg=None):
        return [Answer(given[q], 0.0) for q in questions]

    monkeypatch.setattr(openblip.evaluate.harness, "answer_questions", answer_questions)
    accuracy = {}
    for rules in (None, "pre-2021", "2021"):
        args = ["eval", "--model", str(model), "--data", str(split), "--task", "vqa"]
        assert main(args + (["--vqa-rules", rules] if rules else [])) == 0
        accuracy[rules] = json.loads(capsys.readouterr().out)["metrics"]["vqa_accuracy"]
    assert accuracy[None] == accuracy["pre-2021"] == pytest.approx(80.0, abs=1e-9)
    assert accuracy["2021"] == pytest.approx(50.0, abs=1e-9)
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", str(model), "--data", str(split), "--task", "vqa", "--vqa-rules", "2022"])
    assert exit_info.value.code == 2
