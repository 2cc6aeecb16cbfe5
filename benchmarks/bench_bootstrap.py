"""CapFilt end to end: `openblip bootstrap` vs the same pipeline built from transformers' BLIP
caption and ITM models, in one run, on the same shards and the same weights.

Both sides go from webdataset shards to written outputs (a scores parquet and a tar of kept pairs
per shard): decode + preprocess, nucleus-sampled captions (top-p 0.9, top-k 50, repetition penalty
1.1, max length 20, min length 5, prompt "a picture of "), ITM probability and ITC cosine of the
web text and the synthetic text against their image, threshold 0.5. The models are random
(std 0.02) caption and retrieval layouts, exported with our converter to transformers directories;
openblip loads those same directories. Model loading is outside the timed part on both sides.

  python benchmarks/bench_bootstrap.py --arch base --samples 16 --batch-size 8 --workers 1
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from openblip.bootstrap import BootstrapConfig, bootstrap
from openblip.checkpoint_io import export_hf
from openblip.config import preset
from openblip.data.synthetic import SynthConfig, SynthSize, write_benchmark
from openblip.data.webdataset import iter_shards, list_shards
from openblip.model import Blip
from openblip.tokenizer import Tokenizer


def make_models(arch: str, root: Path) -> tuple[Path, Path]:
    tok = Tokenizer.default()
    out = []
    for i, layout in enumerate(("caption", "retrieval")):
        torch.manual_seed(i)
        model = Blip(preset(arch, layout)).eval()
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        out.append(export_hf(model, tok, root / layout))
    return out[0], out[1]


def run_transformers(shards: list[Path], cap_dir: Path, itm_dir: Path, out: Path, batch: int, size: int) -> float:
    """The straightforward transformers pipeline; returns seconds from shards to written outputs."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image
    from transformers import (
        BertTokenizerFast,
        BlipForConditionalGeneration,
        BlipForImageTextRetrieval,
        BlipImageProcessor,
    )

    cap = BlipForConditionalGeneration.from_pretrained(cap_dir).eval()
    itm = BlipForImageTextRetrieval.from_pretrained(itm_dir).eval()
    tok = BertTokenizerFast.from_pretrained(cap_dir)
    proc = BlipImageProcessor(size={"height": size, "width": size})
    prompt = tok(["a picture of "], return_tensors="pt").input_ids[:, :-1]
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    start = time.perf_counter()
    for shard in shards:
        samples = list(iter_shards(shard))
        rows: list[dict[str, Any]] = []
        with tarfile.open(out / f"{shard.stem}.tar", "w") as tar:
            for lo in range(0, len(samples), batch):
                chunk = samples[lo : lo + batch]
                images = [Image.open(io.BytesIO(s.image_bytes)).convert("RGB") for s in chunk]
                pixels = proc(images, return_tensors="pt").pixel_values
                with torch.inference_mode():
                    ids = cap.generate(
                        pixel_values=pixels,
                        input_ids=prompt.repeat(len(chunk), 1),
                        do_sample=True,
                        top_p=0.9,
                        top_k=50,
                        repetition_penalty=1.1,
                        max_length=20,
                        min_length=5,
                    )
                    captions = [
                        t[len("a picture of ") :].strip() for t in tok.batch_decode(ids, skip_special_tokens=True)
                    ]
                    texts = [t for s, c in zip(chunk, captions) for t in (s.text or "", c)]
                    enc = tok(texts, padding="longest", truncation=True, max_length=35, return_tensors="pt")
                    pix2 = pixels.repeat_interleave(2, 0)
                    itm_p = itm(input_ids=enc.input_ids, attention_mask=enc.attention_mask, pixel_values=pix2).itm_score
                    itm_p = itm_p.softmax(-1)[:, 1]
                    itc = itm(
                        input_ids=enc.input_ids,
                        attention_mask=enc.attention_mask,
                        pixel_values=pix2,
                        use_itm_head=False,
                    ).itm_score.diagonal()
                for b, s in enumerate(chunk):
                    web, syn = float(itm_p[2 * b]), float(itm_p[2 * b + 1])
                    rows.append({"key": s.key, "web_itm": web, "web_itc": float(itc[2 * b]), "synthetic_itm": [syn]})
                    for name, text, p in ((f"{s.key}_web", s.text or "", web), (f"{s.key}_syn0", captions[b], syn)):
                        if p > 0.5:
                            for suffix, data in (("jpg", s.image_bytes), ("txt", text.encode())):
                                info = tarfile.TarInfo(f"{name}.{suffix}")
                                info.size = len(data)
                                tar.addfile(info, io.BytesIO(data))
        pq.write_table(pa.Table.from_pylist(rows), out / f"{shard.stem}.parquet")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="base", choices=("tiny", "base", "large"))
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--per-shard", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-transformers", action="store_true")
    args = ap.parse_args()
    size = preset(args.arch).vision.image_size
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cap_dir, itm_dir = make_models(args.arch, root / "models")
        write_benchmark(
            root / "synth",
            SynthConfig(
                SynthSize(1, args.samples, 1), image_size=256, web_noise=0.4, seed=0, samples_per_shard=args.per_shard
            ),
        )
        shards = list_shards(root / "synth" / "web")
        cfg = BootstrapConfig(
            out=str(root / "ours"),
            filter=str(itm_dir),
            captioner=str(cap_dir),
            device=args.device,
            batch_size=args.batch_size,
            workers=args.workers,
        )
        t0 = time.perf_counter()
        result = bootstrap(cfg, [str(root / "synth" / "web")])
        ours_total = time.perf_counter() - t0
        ours = result.stats["throughput"]["seconds"]["wall"]
        record: dict[str, Any] = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "torch": torch.__version__,
            "arch": args.arch,
            "image_size": size,
            "samples": args.samples,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "openblip_samples_per_s": round(args.samples / ours, 3),
            "openblip_seconds_incl_model_load": round(ours_total, 2),
            "openblip_stage_seconds": result.stats["throughput"]["seconds"],
        }
        if not args.skip_transformers:
            hf = run_transformers(shards, cap_dir, itm_dir, root / "hf", args.batch_size, size)
            record["transformers_samples_per_s"] = round(args.samples / hf, 3)
            record["ratio"] = round(hf / ours, 2)
        record["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
        print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
