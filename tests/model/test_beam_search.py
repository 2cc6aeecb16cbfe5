"""Beam search rules (model/beam_search.py): hand-worked cases where transformers 4.15's rules (the
original's, the default) and today's transformers' choose differently, and the default against
transformers 4.15.0's own beam search in a subprocess, on the same fake LMs and on tiny BLIP
decoders. Parity with today's transformers: tests/parity, tests/tasks/test_parity_hf.py."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from openblip.model.beam_search import beam_search
from openblip.model.generate import BeamRules, GenerationConfig, generate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F, EOS, A, B, C, D = range(6)  # F: filler
VOCAB = 6
TINY = 1e-6  # probability of every token a node does not name
DRIVER = Path(__file__).with_name("tf415_beam.py")


def node(main: dict[int, float]) -> torch.Tensor:
    """Log-probabilities: the named tokens (their probabilities scaled to leave TINY to each other
    token). The hand computations below ignore TINY (scores are checked to 1e-4)."""
    rest = VOCAB - len(main)
    p = torch.full((VOCAB,), TINY, dtype=torch.float64)
    for tok, q in main.items():
        p[tok] = q * (1 - rest * TINY)
    return p.log().float()


class _History:
    """The fake LM's cache: each row's tokens so far, reordered as the beams are."""

    static = False

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def select(self, rows: torch.Tensor) -> None:
        self.rows = [list(self.rows[i]) for i in rows.tolist()]


class _Contexts:
    def select(self, keep: torch.Tensor) -> _Contexts:
        return self


class FakeLM:
    """A decoder whose next-token log-probabilities are a table keyed by the whole sequence
    (uniform for a sequence not in the table); the interface beam_search drives."""

    def __init__(self, table: dict[tuple[int, ...], torch.Tensor]) -> None:
        self.table = table

    def new_cache(self, batch: int, max_len: int) -> _History:
        return _History()

    def __call__(self, ids: torch.Tensor, mask: None, kv: object, cache: _History, last_only: bool) -> torch.Tensor:
        if not cache.rows:
            cache.rows = [[] for _ in range(ids.shape[0])]
        for row, new in zip(cache.rows, ids.tolist(), strict=True):
            row.extend(new)
        uniform = torch.full((VOCAB,), -math.log(VOCAB))
        return torch.stack([self.table.get(tuple(r), uniform) for r in cache.rows])


def run(table: dict, prompt: list[int], rules: BeamRules, **cfg: float) -> tuple[list[list[int]], list[float]]:
    config = GenerationConfig(eos_token_id=EOS, pad_token_id=F, beam_rules=rules, **cfg)  # type: ignore[arg-type]
    out = beam_search(FakeLM(table), _Contexts(), torch.tensor([prompt]), config)  # type: ignore[arg-type]
    seqs = [[t for t in s if t != F] for s in out.sequences.tolist()]
    return seqs, out.scores.tolist()


# Scenario 1: a 3-token prompt; the two rules rank two finished hypotheses differently.
# 2 beams, length_penalty 1. S(A eos) = log .55 + log .95 = -0.6491; S(B B eos) = log .45 + log .9
# = -0.9039. 4.15 divides by the tokens before [SEP], prompt included: -0.6491/4 = -0.1623 beats
# -0.9039/5 = -0.1808. Today's rule divides by the generated tokens, [SEP] included: -0.6491/2 =
# -0.3246 loses to -0.9039/3 = -0.3013. Search: step 1 runs A, B; step 2 finishes A-eos (rank 0),
# B-eos is rank 2 (not in the top 2: dropped) and A A, B B run; step 3 finishes B B eos (rank 0).
# 4.15 then holds 2 hypotheses and the step's best candidate, -0.9039/5, is no better than the
# worst (-0.1808): done. Today's: the best running beam is a TINY one: done.
PROMPT1 = [C, C, C]
SCENARIO1 = {
    (C, C, C): node({A: 0.55, B: 0.45}),
    (C, C, C, A): node({EOS: 0.95, A: 0.05}),
    (C, C, C, B): node({B: 0.9, EOS: 0.1}),
    (C, C, C, A, A): node({EOS: 1.0}),
    (C, C, C, B, B): node({EOS: 1.0}),
}

# Scenario 2: hypotheses reaching max_length (3 with [DEC]), length_penalty 2. Last step's
# candidates: A-eos log .33, B-eos log .28, A A log .27, B B log .12 (A .6, B .4; after A: eos
# .55, A .45; after B: eos .7, B .3). 4.15 adds the two enders among the top 2 (/2**2: -0.2772,
# -0.3183), is not done (best candidate -1.1087/2**2 = -0.2772 beats the worst), and finalize adds
# the running beams, A A and B B from ranks 2 and 3, at length 3 (/3**2: -0.1455, -0.2356): those
# win, without [SEP]. Today's: the top 2 candidates finish, /2**2: A-eos, then B-eos.
SCENARIO2 = {
    (C,): node({A: 0.6, B: 0.4}),
    (C, A): node({EOS: 0.55, A: 0.45}),
    (C, B): node({EOS: 0.7, B: 0.3}),
}

# Scenario 3: stopping. [DEC] only, 2 beams, length_penalty 1, max_length 8.
# step 1: eos .4 finishes at once ([DEC] eos, -0.9163/1); A .35, B .25 run.
# step 2: A-eos log(.35*.6) = -1.5606 (rank 0) finishes, /2 = -0.7803; B A -1.8971, A C -1.9661 run.
#   4.15: the best candidate (A-eos) /2 = -0.7803 beats the worst kept (-0.9163): not done.
#   Today's: the best running beam -1.8971/2 = -0.9486 cannot beat -0.9163: done -> [A eos].
# step 3 (4.15): B A eos -1.9484/3 = -0.6495 finishes (best so far); A C D -2.7646 runs.
# step 4: A C D eos -2.7646/4 = -0.6912 finishes; the best candidate is that one: done.
#   4.15 returns [B A eos] (-0.6495), then [A C D eos] (-0.6912).
SCENARIO3 = {
    (C,): node({EOS: 0.4, A: 0.35, B: 0.25}),
    (C, A): node({EOS: 0.6, C: 0.4}),
    (C, B): node({A: 0.6, EOS: 0.4}),
    (C, B, A): node({EOS: 0.95, A: 0.05}),
    (C, A, C): node({EOS: 0.55, D: 0.45}),
    (C, A, C, D): node({EOS: 1.0}),
    (C, B, A, A): node({EOS: 1.0}),
}

L = math.log
HAND: list[Any] = [
    # (table, prompt, config, 4.15 sequences and scores, today's sequences and scores)
    (
        SCENARIO1,
        PROMPT1,
        dict(num_beams=2, max_length=10),
        ([[C, C, C, A, EOS]], [(L(0.55) + L(0.95)) / 4]),
        ([[C, C, C, B, B, EOS]], [(L(0.45) + L(0.9)) / 3]),
    ),
    (
        SCENARIO2,
        [C],
        dict(num_beams=2, max_length=3, length_penalty=2.0, num_return_sequences=2),
        ([[C, A, A], [C, B, B]], [(L(0.6) + L(0.45)) / 9, (L(0.4) + L(0.3)) / 9]),
        ([[C, A, EOS], [C, B, EOS]], [(L(0.6) + L(0.55)) / 4, (L(0.4) + L(0.7)) / 4]),
    ),
    (
        SCENARIO3,
        [C],
        dict(num_beams=2, max_length=8, num_return_sequences=2),
        ([[C, B, A, EOS], [C, A, C, D, EOS]], [(L(0.25) + L(0.6) + L(0.95)) / 3, (L(0.35) + L(0.4) + L(0.45)) / 4]),
        ([[C, A, EOS], [C, EOS]], [(L(0.35) + L(0.6)) / 2, L(0.4)]),
    ),
]


@pytest.mark.parametrize("case", range(len(HAND)), ids=["lengths_with_prompt", "max_length_lp2", "stopping"])
def test_hand_worked_cases(case: int) -> None:
    table, prompt, cfg, original, today = HAND[case]
    for rules, (want_seqs, want_scores) in ((BeamRules.ORIGINAL, original), (BeamRules.TRANSFORMERS, today)):
        seqs, scores = run(table, prompt, rules, **cfg)
        assert seqs == want_seqs, rules
        assert scores == pytest.approx(want_scores, abs=1e-4), rules


def test_default_rules_are_the_original() -> None:
    assert GenerationConfig().beam_rules is BeamRules.ORIGINAL
    assert "beam_rules=<BeamRules.ORIGINAL" in repr(GenerationConfig())
    with pytest.raises(TypeError, match="BeamRules"):
        GenerationConfig(beam_rules="transformers")  # type: ignore[arg-type]


def test_token_logprobs_sum_to_the_hypothesis() -> None:
    """Each finished hypothesis carries its tokens' log-probabilities (0 at prompt and padding)."""
    table, prompt, cfg, original, _ = HAND[2]
    config = GenerationConfig(eos_token_id=EOS, pad_token_id=F, **cfg)
    out = beam_search(FakeLM(table), _Contexts(), torch.tensor([prompt]), config)  # type: ignore[arg-type]
    lengths = [3, 4]  # tokens before [SEP]: the 4.15 divisor
    for row, length in enumerate(lengths):
        logp = out.token_logprobs[row]
        assert logp[0] == 0.0 and logp[length + 1 :].eq(0).all()
        assert float(logp.sum()) / length == pytest.approx(original[1][row], abs=1e-5)
    assert float(out.token_logprobs[0, 1]) == pytest.approx(L(0.25), abs=1e-5)


# ---- against transformers 4.15.0 itself -------------------------------------------------------
def _tf415_dir() -> Path:
    """transformers 4.15.0 (pure Python) installed once into the test cache, without deps."""
    from openblip.cache_dir import cache_dir

    target = cache_dir() / "test-deps" / "transformers-4.15.0"
    if (target / "transformers" / "generation_beam_search.py").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", tmp, "transformers==4.15.0"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"transformers 4.15.0 could not be installed: {done.stderr.strip()[-300:]}")
        try:
            Path(tmp).rename(target)  # atomic: a concurrent or killed install never leaves half a tree
        except OSError:
            if not target.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@pytest.fixture(scope="module")
def tf415() -> Path:
    return _tf415_dir()


def _run_tf415(tf415: Path, cases: list[dict], tmp_path: Path) -> list[dict]:
    data, out = tmp_path / "cases.pt", tmp_path / "out.json"
    torch.save(cases, data)
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(tf415), str(data), str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def _driver_cfg(cfg: GenerationConfig) -> dict:
    return dict(
        max_length=cfg.max_length,
        min_length=cfg.min_length,
        num_beams=cfg.num_beams,
        length_penalty=cfg.length_penalty,
        repetition_penalty=cfg.repetition_penalty,
        num_return_sequences=cfg.num_return_sequences,
        eos=cfg.eos_token_id,
        pad=cfg.pad_token_id,
    )


def _until_eos(rows: list[list[int]], eos: int, pad: int) -> list[list[int]]:
    return [r[: r.index(eos) + 1] if eos in r else [t for t in r if t != pad] for r in rows]


def test_hand_worked_cases_are_what_transformers_4_15_does(tf415: Path, tmp_path: Path) -> None:
    cases = []
    for table, prompt, cfg, _, _ in HAND:
        config = GenerationConfig(eos_token_id=EOS, pad_token_id=F, **cfg)
        cases.append({"cfg": _driver_cfg(config), "prompt": torch.tensor([prompt]), "table": table, "vocab": VOCAB})
    for got, (_, _, _, (want_seqs, want_scores), _) in zip(_run_tf415(tf415, cases, tmp_path), HAND, strict=True):
        assert _until_eos(got["sequences"], EOS, F) == want_seqs
        assert got["scores"] == pytest.approx(want_scores, abs=1e-4)


MODEL_CASES = [  # (prompt, config): captioning and VQA settings, early ends and max_length hits
    ([30522, 1037, 3861, 1997], GenerationConfig(max_length=14, min_length=5, num_beams=3)),
    (
        [30522, 1037, 3861, 1997],
        GenerationConfig(max_length=12, num_beams=4, length_penalty=0.6, num_return_sequences=2),
    ),
    ([30522], GenerationConfig(max_length=10, min_length=1, num_beams=3)),
    ([30522, 1037], GenerationConfig(max_length=12, num_beams=3, length_penalty=2.0, repetition_penalty=1.3)),
]


def test_default_rules_equal_transformers_4_15_on_a_blip_decoder(tf415: Path, tmp_path: Path, tiny_blip) -> None:
    model = tiny_blip("caption", 1)
    assert model.text_decoder is not None
    with torch.no_grad():  # more [SEP] and common tokens, so that beams end at different lengths
        model.text_decoder.head.bias[102] += 3.0
        model.text_decoder.head.bias[:300] += 3.0
    context = model.encode_image(torch.randn(6, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 3).detach()
    state = model.state_dict()
    cases = [
        {"cfg": _driver_cfg(cfg), "prompt": torch.tensor([prompt] * 6), "model": state, "context": context}
        for prompt, cfg in MODEL_CASES
    ]
    theirs = _run_tf415(tf415, cases, tmp_path)
    differs = 0
    ended_early = reached_max = 0
    for (prompt, cfg), ref in zip(MODEL_CASES, theirs, strict=True):
        ours = generate(model.text_decoder, context, torch.tensor(prompt), cfg)
        want = _until_eos(ref["sequences"], 102, 0)
        assert _until_eos(ours.sequences.tolist(), 102, 0) == want, cfg
        # cached steps vs 4.15's full recomputation: float32 summation order only (each token's
        # log-prob within 2e-5 here, so the length-normalised score well within 1e-4)
        assert ours.scores.tolist() == pytest.approx(ref["scores"], abs=1e-4), cfg
        ended_early += sum(r[-1] == 102 for r in want)
        reached_max += sum(len(r) == cfg.max_length and r[-1] != 102 for r in want)
        today = generate(model.text_decoder, context, torch.tensor(prompt), _with_rules(cfg, BeamRules.TRANSFORMERS))
        differs += _until_eos(today.sequences.tolist(), 102, 0) != want
    assert ended_early and reached_max, "the cases should hold hypotheses that end early and that reach max_length"
    assert differs, "the two rule sets should choose differently somewhere on these cases"


def _with_rules(cfg: GenerationConfig, rules: BeamRules) -> GenerationConfig:
    from dataclasses import replace

    return replace(cfg, beam_rules=rules)
