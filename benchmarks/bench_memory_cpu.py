"""Peak host memory of captioning, openblip vs transformers' BLIP on the same weights (CPU).

Each side runs in its own fresh process (one process would share the allocator's high-water
mark): build transformers' default BlipConfig captioning model (base, 384 px) with the weights
bench_inference.py uses, convert it for openblip's side and drop the transformers copy, then
reset the kernel's peak-RSS counter (/proc/self/clear_refs) and caption --bs random images with
greedy and with 3 beams, 20 new tokens forced. Reported: the resident set once the model is
loaded, the peak during the captioning runs, and the difference (what inference itself adds).

  python benchmarks/bench_memory_cpu.py --bs 4
Linux only (reads /proc/self/status). Needs torch, transformers and openblip's model code.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

NEW_TOKENS = 20


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def settle() -> None:
    """Free what Python and the C allocator still hold, so the baseline is the model itself."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(side: str, bs: int, tiny: bool) -> dict[str, float]:
    from transformers import BlipConfig, BlipForConditionalGeneration

    from bench_inference import ours_from, spread_weights
    from openblip.model.generate import GenerationConfig, generate

    cfg = BlipConfig()
    if tiny:
        for sub in (cfg.vision_config, cfg.text_config):
            sub.hidden_size, sub.intermediate_size, sub.num_hidden_layers, sub.num_attention_heads = 64, 128, 2, 2
        cfg.vision_config.image_size = 96
        cfg.text_config.encoder_hidden_size = 64
    torch.manual_seed(0)
    px = torch.randn(bs, 3, cfg.vision_config.image_size, cfg.vision_config.image_size)
    with torch.inference_mode():
        hf = spread_weights(BlipForConditionalGeneration(cfg)).eval()
        if side == "openblip":
            ours = ours_from(hf, "cpu", torch.float32)
            del hf
            decoder, vision, prompt = ours.text_decoder, ours.visual_encoder, torch.tensor([30522])

            def run(beams: int) -> None:
                gcfg = GenerationConfig(num_beams=beams, max_length=1 + NEW_TOKENS, min_length=1 + NEW_TOKENS)
                generate(decoder, vision(px), prompt, gcfg)  # type: ignore[arg-type]

        else:

            def run(beams: int) -> None:
                hf.generate(
                    pixel_values=px,
                    num_beams=beams,
                    max_new_tokens=NEW_TOKENS,
                    min_new_tokens=NEW_TOKENS,
                    do_sample=False,
                )

        settle()
        loaded = status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        for beams in (1, 3):
            run(beams)
        peak = status_kib("VmHWM")
    return {"loaded_mib": loaded / 1024, "peak_mib": peak / 1024, "added_mib": (peak - loaded) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bs", type=int, default=4)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer, 96 px model (smoke test of this script)")
    ap.add_argument("--side", choices=["openblip", "transformers"], help=argparse.SUPPRESS)  # the child's job
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.side:
        print(json.dumps(measure(a.side, a.bs, a.tiny)))
        return
    res: dict[str, object] = {"bs": a.bs, "tiny": a.tiny, "threads": torch.get_num_threads()}
    for side in ("transformers", "openblip"):
        cmd = [sys.executable, __file__, "--side", side, "--bs", str(a.bs), *(["--tiny"] if a.tiny else [])]
        res[side] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    hf, us = res["transformers"], res["openblip"]
    assert isinstance(hf, dict) and isinstance(us, dict)
    print("| side | model loaded (MiB) | peak while captioning (MiB) | added by inference (MiB) |")
    print("|---|---|---|---|")
    for name, r in (("transformers", hf), ("openblip", us)):
        print(f"| {name} | {r['loaded_mib']:.0f} | {r['peak_mib']:.0f} | {r['added_mib']:.0f} |")
    res["peak_ratio"] = us["peak_mib"] / hf["peak_mib"]
    print(json.dumps(res))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
