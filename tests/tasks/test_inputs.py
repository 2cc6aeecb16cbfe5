from __future__ import annotations

import re

import pytest

from openblip.tasks.inputs import check_text, clean_texts


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
