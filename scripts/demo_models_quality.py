"""Measure the shipped demo models on a fresh synthetic split and print the figures as JSON.

.venv/bin/python scripts/demo_models_quality.py --out runs/demo/quality --seed 9000
"""

from __future__ import annotations

import argparse
import json
import sys

from openblip.demo_models.quality import fresh_split, measure_quality


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="where the fresh split is written (reused if complete)")
    parser.add_argument("--seed", type=int, default=9000, help="a seed the models were not trained on")
    parser.add_argument("--test-images", type=int, default=100)
    parser.add_argument("--web-texts", type=int, default=500)
    parser.add_argument("--caption-filter", default="synthetic-caption")
    parser.add_argument("--vqa", default="synthetic-vqa")
    args = parser.parse_args()
    data = fresh_split(args.out, args.seed, args.test_images, args.web_texts)
    figures = measure_quality(data, caption_filter=args.caption_filter, vqa=args.vqa, test_images=args.test_images)
    json.dump({"seed": args.seed, **figures}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
