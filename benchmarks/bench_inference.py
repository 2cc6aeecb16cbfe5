"""openblip vs transformers' BLIP on the same weights, in one run, on whatever device is there.

Both sides do the same work: random weights at transformers' default
BlipConfig (base, 384 px), generation forced to exactly 20 new tokens, ITM/ITC on 30-token texts,
VQA with 5 answer tokens. Every figure is a median over --reps timed runs after one warm-up.
Correctness is checked in the same run: vision features, ITM logits and greedy ids.

  python benchmarks/bench_inference.py --device cpu --dtype float32 --bs 4
  python benchmarks/bench_inference.py --device cuda --dtype bfloat16 --bs 256 --compile
Needs only torch, transformers and openblip's model code (PYTHONPATH=src works without install).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from openblip.checkpoint_io import build_model
from openblip.convert import hf as hf_convert
from openblip.model import Blip
from openblip.model.generate import BeamRules, GenerationConfig, generate

NEW_TOKENS = 20


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], reps: int, device: str) -> float:
    fn()  # warm-up (and compilation)
    sync(device)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def peak_mem(device: str, fn: Callable[[], Any]) -> float | None:
    if device != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated() / 2**30


def ours_from(hf_model: torch.nn.Module, device: str, dtype: torch.dtype, cpu_kernels: str | None = None) -> Blip:
    """Our model on transformers' weights, with the CPU-kernel choice `cpu_kernels` (None:
    $OPENBLIP_CPU_KERNEL, else auto), as openblip.load makes it."""
    state = {k: v for k, v in hf_model.state_dict().items()}
    cfg = hf_convert.infer_config(hf_model.config.to_dict(), "benchmark", set(state))
    model, _ = build_model(cfg, state, kmap=hf_convert.KEYMAP, source="benchmark", device=device, dtype=dtype)
    model.use_cpu_kernels(cpu_kernels)
    return model


def spread_weights(model: torch.nn.Module) -> torch.nn.Module:
    """Redraw every matrix with std 0.02: transformers initialises BLIP's vision weights with std
    1e-10 (`initializer_range`), under which the vision check would compare near-constants.
    Timings do not depend on the values."""
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():
        if p.dim() > 1:
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def first_sep(rows: list[list[int]]) -> list[list[int]]:
    return [r[: r.index(102) + 1] if 102 in r else r for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--bs", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="torch.compile our vision encoder")
    ap.add_argument("--skip", default="", help="comma list of figures to skip, e.g. nucleus,vqa")
    ap.add_argument("--cuda-graph", action="store_true", help="replay our decoding steps from CUDA graphs")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer, 96 px model (smoke test of this script)")
    ap.add_argument(
        "--cpu-kernels",
        choices=["auto", "on", "off"],
        help="our CPU kernels (default: $OPENBLIP_CPU_KERNEL, else auto), as openblip.load's cpu_kernels",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import transformers
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipForImageTextRetrieval,
        BlipForQuestionAnswering,
    )

    dev, dtype, bs = a.device, getattr(torch, a.dtype), a.bs
    skip = set(filter(None, a.skip.split(",")))
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if dev == "cuda" else f"cpu ({platform.processor() or 'unknown'})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": a.dtype,
        "bs": bs,
        "compile": a.compile,
        "tiny": a.tiny,
        "cuda_graph": a.cuda_graph,
    }
    cfg = BlipConfig()
    if a.tiny:  # 2 layers of width 64 each side, 96 px
        for sub in (cfg.vision_config, cfg.text_config):
            sub.hidden_size, sub.intermediate_size, sub.num_hidden_layers, sub.num_attention_heads = 64, 128, 2, 2
        cfg.vision_config.image_size = 96
        cfg.text_config.encoder_hidden_size = 64
    size = cfg.vision_config.image_size
    torch.manual_seed(0)
    px = torch.randn(bs, 3, size, size, device=dev, dtype=dtype)
    ids = torch.randint(1000, 30000, (bs, 30), device=dev)
    ids[:, 0] = 30523  # [ENC]: we substitute it as the original does; transformers gets the same ids
    ids[:, -1] = 102
    mask = torch.ones_like(ids)
    itc_ids = ids.clone()
    itc_ids[:, 0] = 101
    figures: list[tuple[str, str, float, float, float | None, float | None]] = []

    def record(name: str, unit: str, hf_fn: Callable[[], Any], our_fn: Callable[[], Any]) -> None:
        if name in skip:
            return
        t_hf = timed(hf_fn, a.reps, dev)
        t_us = timed(our_fn, a.reps, dev)
        m_hf, m_us = peak_mem(dev, hf_fn), peak_mem(dev, our_fn)
        figures.append((name, unit, bs / t_hf, bs / t_us, m_hf, m_us))
        res[f"{name}_hf"] = bs / t_hf
        res[f"{name}_ours"] = bs / t_us
        res[f"{name}_speedup"] = t_hf / t_us
        if m_hf is not None:
            res[f"{name}_peak_gib_hf"], res[f"{name}_peak_gib_ours"] = m_hf, m_us
        print(
            f"  {name}: transformers {bs / t_hf:.3g} {unit}, openblip {bs / t_us:.3g} {unit}, x{t_hf / t_us:.2f}",
            file=sys.stderr,
            flush=True,
        )

    with torch.inference_mode():
        hf = spread_weights(BlipForConditionalGeneration(cfg)).to(dev, dtype).eval()
        ours = ours_from(hf, dev, dtype, a.cpu_kernels)
        assert ours.text_decoder is not None
        res["cpu_kernels"] = str(ours.cpu_kernels)
        print(f"  openblip CPU kernels: {ours.cpu_kernels}", file=sys.stderr, flush=True)
        vision = torch.compile(ours.visual_encoder) if a.compile else ours.visual_encoder
        # correctness on these weights
        ref_img = hf.vision_model(pixel_values=px).last_hidden_state
        our_img = vision(px)
        res["check_vision_max_abs_diff"] = float((ref_img.float() - our_img.float()).abs().max())
        prompt = torch.tensor([30522], device=dev)

        def our_caption(gcfg: GenerationConfig) -> torch.Tensor:
            return generate(ours.text_decoder, vision(px), prompt, gcfg).sequences  # type: ignore[arg-type]

        # today's transformers beam rules: the ids are checked against transformers' own
        forced: dict[str, Any] = dict(
            max_length=1 + NEW_TOKENS,
            min_length=1 + NEW_TOKENS,
            cuda_graph=a.cuda_graph,
            beam_rules=BeamRules.TRANSFORMERS,
        )
        h_ids = hf.generate(pixel_values=px, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
        o_ids = our_caption(GenerationConfig(**forced))
        res["check_greedy_ids_equal"] = first_sep(h_ids.tolist()) == first_sep(o_ids.tolist())
        h_ids = hf.generate(
            pixel_values=px, num_beams=3, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
        )
        o_ids = our_caption(GenerationConfig(num_beams=3, **forced))
        res["check_beam3_ids_equal"] = first_sep(h_ids.tolist()) == first_sep(o_ids.tolist())
        res["caption_tokens"] = int(o_ids.shape[1])

        record("vision", "img/s", lambda: hf.vision_model(pixel_values=px), lambda: vision(px))
        # one decoder step: a 30-token teacher-forced decoder pass over fixed image tokens
        dec_ids = ids.clone()
        dec_ids[:, 0] = 30522
        tokens = our_img.detach()
        record(
            "decoder_30tok",
            "seq/s",
            lambda: hf.text_decoder(input_ids=dec_ids, attention_mask=mask, encoder_hidden_states=tokens),
            lambda: ours.text_decoder(dec_ids, mask, tokens),  # type: ignore[misc]
        )
        for beams in (1, 3):
            record(
                f"caption_beam{beams}",
                "img/s",
                lambda b=beams: hf.generate(
                    pixel_values=px, num_beams=b, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
                ),
                lambda b=beams: our_caption(GenerationConfig(num_beams=b, **forced)),
            )
        record(
            "caption_nucleus",
            "img/s",
            lambda: hf.generate(
                pixel_values=px,
                do_sample=True,
                top_p=0.9,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                repetition_penalty=1.0,
            ),
            lambda: our_caption(GenerationConfig(do_sample=True, top_p=0.9, top_k=50, seed=0, **forced)),
        )
        hf = ours = vision = None  # free before the next model
        hf_itm = spread_weights(BlipForImageTextRetrieval(cfg)).to(dev, dtype).eval()
        ours = ours_from(hf_itm, dev, dtype, a.cpu_kernels)
        vision = torch.compile(ours.visual_encoder) if a.compile else ours.visual_encoder
        h_logits = hf_itm(input_ids=ids, attention_mask=mask, pixel_values=px, use_itm_head=True).itm_score
        o_logits = ours.itm_logits(ids, mask, vision(px))
        res["check_itm_max_abs_diff"] = float((h_logits.float() - o_logits.float()).abs().max())
        record(
            "itm",
            "pairs/s",
            lambda: hf_itm(input_ids=ids, attention_mask=mask, pixel_values=px, use_itm_head=True),
            lambda: ours.itm_logits(ids, mask, vision(px)).softmax(-1),
        )
        record(
            "itc",
            "pairs/s",
            lambda: hf_itm(input_ids=itc_ids, attention_mask=mask, pixel_values=px, use_itm_head=False),
            lambda: ours.itc_similarity(ours.image_embed(vision(px)), ours.text_embed(itc_ids, mask)),
        )
        hf_itm = ours = vision = None  # type: ignore[assignment]
        hf_vqa = spread_weights(BlipForQuestionAnswering(cfg)).to(dev, dtype).eval()
        ours = ours_from(hf_vqa, dev, dtype, a.cpu_kernels)
        vision = torch.compile(ours.visual_encoder) if a.compile else ours.visual_encoder
        q = ids[:, :12].clone()
        q[:, -1] = 102
        qmask = torch.ones_like(q)

        def our_vqa() -> torch.Tensor:
            states = ours.grounded_hidden(q, qmask, vision(px))
            return generate(
                ours.text_decoder,
                states,
                prompt,  # type: ignore[arg-type]
                GenerationConfig(max_length=6, min_length=6, cuda_graph=a.cuda_graph),
            ).sequences

        record(
            "vqa_gen5",
            "q/s",
            lambda: hf_vqa.generate(input_ids=q, pixel_values=px, max_new_tokens=5, min_new_tokens=5),
            our_vqa,
        )
    print("| figure | transformers | openblip | speed-up | peak GiB (hf / ours) |")
    print("|---|---|---|---|---|")
    for name, unit, h, o, mh, mo in figures:
        mem = "" if mh is None else f"{mh:.1f} / {mo:.1f}"
        print(f"| {name} | {h:,.3g} {unit} | {o:,.3g} {unit} | {o / h:.2f}x | {mem} |")
    print(json.dumps(res))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
