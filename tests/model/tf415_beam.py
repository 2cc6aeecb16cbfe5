"""Run transformers 4.15.0's own beam search (GenerationMixin.beam_search + BeamSearchScorer +
its logits processors) over given decoders, as salesforce/BLIP's generate drove it. A script, run
in a subprocess by test_beam_search.py, so that 4.15 never shares a process with today's
transformers:  python tf415_beam.py TRANSFORMERS_4_15_DIR CASES.pt OUT.json

4.15's package __init__ checks its pinned dependencies and file_utils imports requests and an old
huggingface_hub, none of which beam search uses: the package is stubbed (its directory as the
package path, no __init__ run) and file_utils is replaced by the two names the generation
modules import from it. Everything else is 4.15's code.

CASES.pt: a list of dicts with "cfg" (max_length, min_length, num_beams, length_penalty,
repetition_penalty, num_return_sequences, eos, pad), "prompt" (B, P) ids and either "model"
(a tiny Blip state dict + "context" (B, N, D) tokens) or "table" (a fake LM: full history tuple
-> log-probabilities over the vocabulary, uniform elsewhere). OUT.json: per case the sequences and
the sequence scores.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import torch


def load_transformers_4_15(root: Path) -> types.ModuleType:
    pkg = types.ModuleType("transformers")
    pkg.__path__ = [str(root / "transformers")]
    pkg.__version__ = "4.15.0"  # type: ignore[attr-defined]
    sys.modules["transformers"] = pkg
    file_utils = types.ModuleType("transformers.file_utils")

    def add_start_docstrings(*_docs: str):
        return lambda fn: fn

    class ModelOutput:  # only the dataclass base of the generate outputs
        pass

    file_utils.add_start_docstrings = add_start_docstrings  # type: ignore[attr-defined]
    file_utils.ModelOutput = ModelOutput  # type: ignore[attr-defined]
    sys.modules["transformers.file_utils"] = file_utils
    import transformers.generation_utils as gu

    assert Path(gu.__file__).is_relative_to(root), gu.__file__
    return gu


class _Out(dict):
    """What 4.15's loop reads from a model call: `.logits`, and `in` for the cache keys."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__(logits=logits)
        self.logits = logits


def run_case(gu: types.ModuleType, case: dict) -> dict:
    import transformers.generation_beam_search as gbs
    import transformers.generation_logits_process as glp
    import transformers.generation_stopping_criteria as gsc

    cfg = case["cfg"]
    k = cfg["num_beams"]
    prompt = case["prompt"]
    batch = prompt.shape[0]
    if "table" in case:
        table, vocab = case["table"], case["vocab"]

        def logits_of(ids: torch.Tensor) -> torch.Tensor:
            rows = [
                table.get(tuple(r), torch.full((vocab,), -float(torch.log(torch.tensor(vocab))))) for r in ids.tolist()
            ]
            return torch.stack([torch.as_tensor(r, dtype=torch.float32) for r in rows])
    else:
        from openblip.config import preset
        from openblip.model import Blip

        model = Blip(preset("tiny", "caption")).eval()
        model.load_state_dict(case["model"])
        decoder = model.text_decoder
        assert decoder is not None
        # the original repeats the image tokens once per beam (blip.py: repeat_interleave)
        context = case["context"].repeat_interleave(k, 0)

        def logits_of(ids: torch.Tensor) -> torch.Tensor:
            return decoder(ids, None, context)[:, -1]

    class Driven(gu.GenerationMixin):  # type: ignore[name-defined]
        config = types.SimpleNamespace(is_encoder_decoder=False)

        def prepare_inputs_for_generation(self, input_ids: torch.Tensor, **_: object) -> dict:
            return {"input_ids": input_ids}

        def __call__(self, input_ids: torch.Tensor, **_: object) -> _Out:
            return _Out(logits_of(input_ids)[:, None])

    processors = []
    if cfg["repetition_penalty"] != 1.0:
        processors.append(glp.RepetitionPenaltyLogitsProcessor(cfg["repetition_penalty"]))
    processors.append(glp.MinLengthLogitsProcessor(cfg["min_length"], cfg["eos"]))  # 4.15's order
    scorer = gbs.BeamSearchScorer(
        batch_size=batch,
        num_beams=k,
        device=torch.device("cpu"),
        length_penalty=cfg["length_penalty"],
        do_early_stopping=False,
        num_beam_hyps_to_keep=cfg["num_return_sequences"],
    )
    with torch.no_grad():
        out = Driven().beam_search(
            prompt.repeat_interleave(k, 0),
            scorer,
            logits_processor=glp.LogitsProcessorList(processors),
            stopping_criteria=gsc.StoppingCriteriaList([gsc.MaxLengthCriteria(cfg["max_length"])]),
            pad_token_id=cfg["pad"],
            eos_token_id=cfg["eos"],
            output_scores=True,  # sequences_scores come with it
            output_attentions=False,
            output_hidden_states=False,
            return_dict_in_generate=True,
            synced_gpus=False,
        )
    return {"sequences": out.sequences.tolist(), "scores": out.sequences_scores.tolist()}


def main() -> None:
    root, cases_path, out_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    gu = load_transformers_4_15(root)
    torch.set_num_threads(1)
    cases = torch.load(cases_path, weights_only=False)
    out_path.write_text(json.dumps([run_case(gu, c) for c in cases]))


if __name__ == "__main__":
    main()
