from __future__ import annotations

import pytest

from openblip.evaluate import normalize_answer, vqa_accuracy, vqa_accuracy_simple, vqa_score


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Two", "2"),
        ("the Dog.", "dog"),
        ("Yes!", "yes"),
        ("  none \n", "0"),
        ("dont", "don't"),
        ("an apple and a pear", "apple and pear"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("1,000", "1000"),  # a digit,digit group makes every mark disappear instead of becoming a space
        ("hello, world", "hello world"),  # ", " touches a space: deleted
        ("black/white", "black white"),  # "/" touches no space: becomes a space
        ("t-shirt", "t shirt"),
        ("it's", "it's"),  # apostrophes are not in the script's punctuation list
        ("Ten O'Clock", "10 o'clock"),
    ],
)
def test_normalize_answer(raw: str, normalized: str) -> None:
    assert normalize_answer(raw) == normalized


def _answers(matching: int, answer: str = "2", other: str = "3") -> list[str]:
    return [answer] * matching + [other] * (10 - matching)


@pytest.mark.parametrize("matching", range(11))
def test_accuracy_is_the_leave_one_out_average(matching: int) -> None:
    # Leaving out one of the m matching humans leaves m - 1 matches, leaving out one of the others
    # leaves m: accuracy = (m * min(1, (m-1)/3) + (10-m) * min(1, m/3)) / 10.
    m = matching
    expected = (m * min(1.0, (m - 1) / 3) + (10 - m) * min(1.0, m / 3)) / 10 if m else 0.0
    assert vqa_accuracy("two", _answers(m)) == pytest.approx(expected)
    assert vqa_accuracy_simple("two", _answers(m)) == pytest.approx(min(1.0, m / 3))


def test_accuracy_hand_values() -> None:
    assert vqa_accuracy("2", _answers(1)) == pytest.approx(0.3)  # 9 subsets with 1 match -> 9/3/10
    assert vqa_accuracy("2", _answers(2)) == pytest.approx(0.6)
    assert vqa_accuracy("2", _answers(3)) == pytest.approx(0.9)  # not 1: 3 subsets keep only 2 matches
    assert vqa_accuracy("2", _answers(4)) == pytest.approx(1.0)
    assert vqa_accuracy_simple("2", _answers(3)) == pytest.approx(1.0)
    assert vqa_accuracy("2", ["2"]) == 0.0  # no other human is left to agree


def test_human_answers_get_punctuation_processing_only_when_they_differ() -> None:
    # Identical human answers are compared as stored (VQA annotations are pre-normalised), so a
    # raw "Yes." never matches; normalize_references=True runs the full normalisation on them.
    assert vqa_accuracy("yes", ["Yes."] * 10) == 0.0
    assert vqa_accuracy("yes", ["Yes."] * 10, normalize_references=True) == pytest.approx(1.0)
    # When they differ, punctuation processing applies (the period goes) but not lowercasing.
    assert vqa_accuracy("yes", ["yes."] * 4 + ["no"] * 6) == pytest.approx(1.0)
    assert vqa_accuracy("yes", ["Yes."] * 4 + ["no"] * 6) == 0.0


def test_vqa_score_is_a_percentage_over_questions() -> None:
    preds = {1: "Two", 2: "red", 3: "no"}
    answers = {1: _answers(10), 2: ["red"] * 2 + ["blue"] * 8, 3: ["yes"] * 10}
    assert vqa_score(preds, answers) == pytest.approx(100 * (1.0 + 0.6 + 0.0) / 3)


def test_vqa_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same keys; without answers: \\[1\\]"):
        vqa_score({1: "a"}, {2: ["a"]})
    with pytest.raises(ValueError, match="human answers of question 1 are empty"):
        vqa_score({1: "a"}, {1: []})
    with pytest.raises(TypeError, match="sequence of str"):
        vqa_accuracy("a", "a")
    with pytest.raises(TypeError, match="prediction for question 7 must be a str"):
        vqa_score({7: 3}, {7: ["3"]})  # type: ignore[dict-item]
