from __future__ import annotations

import copy
import re

import pytest
import torch

from openblip.tasks.inputs import check_text, clean_texts, embed_images, embed_texts


def test_check_text_returns_what_the_model_reads() -> None:
    assert check_text("A Dog!  On the beach.", 0) == "a dog on the beach"
    assert check_text("🐱 猫", 1) == "🐱 猫"
    assert check_text(" ".join(["word"] * 2000), 2) == " ".join(["word"] * 30)  # truncated, never an error
    assert check_text("!!!", 0, clean=False) == "!!!"


@pytest.mark.parametrize("text", ["", "   ", "\t\n", "!!!", '."()*#:;~'])
def test_check_text_refuses_a_text_with_nothing_left(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"text 4 is empty ({text!r} after cleaning)")):
        check_text(text, 4)


def test_clean_texts_refuses_one_str() -> None:
    with pytest.raises(TypeError, match="not one str"):
        clean_texts("a dog", True)
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        clean_texts(["a", None], True)  # type: ignore[list-item]


def test_embeddings_are_unit_length_in_float32_from_a_bf16_model(full_model, tokenizer, pixels) -> None:
    """The features are normalised in the model's dtype; in bf16 their norms were 1 ± 0.004
    after the cast to float32, so a dot product was not the cosine the docs promise."""
    bf16 = copy.deepcopy(full_model).to(torch.bfloat16)
    for features in (embed_images(bf16, pixels), embed_texts(bf16, tokenizer, ["a dog", "two red cars on a road"])):
        assert features.dtype == torch.float32
        torch.testing.assert_close(features.norm(dim=-1), torch.ones(len(features)), atol=1e-6, rtol=0)
