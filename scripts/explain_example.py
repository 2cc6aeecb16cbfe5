"""Draw docs/explain_example.png, the README's `openblip explain` picture: the shipped demo filter
(`synthetic-filter`) explaining a text about a two-object synthetic scene.

.venv/bin/python scripts/explain_example.py docs/explain_example.png
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from openblip.checkpoint_io import load_model
from openblip.data.render import render_scene
from openblip.data.scene import SceneGraph, SceneObject, cell_bounds
from openblip.tasks.explain import explain_loaded
from openblip.tasks.heatmap import render

SIZE = 288  # drawn larger than the model's 96 px input so the picture reads well; the model resizes
TEXT = "a large red star and a small blue circle"


def scene() -> Image.Image:
    def placed(shape: str, colour: str, size: str, cell: tuple[int, int], margin: int) -> SceneObject:
        x0, y0, x1, y1 = cell_bounds(SIZE, cell)
        return SceneObject(shape, colour, size, cell, (x0 + margin, y0 + margin, x1 - margin, y1 - margin))

    objects = (placed("star", "red", "large", (0, 0), 8), placed("circle", "blue", "small", (2, 2), 28))
    return render_scene(SceneGraph(SIZE, "gradient", objects, ()), np.random.default_rng(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", help="PNG to write")
    args = parser.parse_args()
    loaded = load_model("synthetic-filter")
    image = scene()
    ((result,),) = explain_loaded(loaded.model.eval(), loaded.tokenizer, [image], [TEXT])
    pictures = render(image, result)
    photo = image.resize(pictures.whole.size)
    parts = [photo, pictures.whole, pictures.words]
    height = max(p.height for p in parts)
    canvas = Image.new("RGB", (sum(p.width for p in parts) + 16 * (len(parts) - 1), height), "white")
    x = 0
    for part in parts:
        canvas.paste(part, (x, 0))
        x += part.width + 16
    canvas.save(args.out)
    print(f"ITM {result.itm_score:.3f}; " + ", ".join(f"{w.word} {w.mass:.2f}" for w in result.words))


if __name__ == "__main__":
    main()
