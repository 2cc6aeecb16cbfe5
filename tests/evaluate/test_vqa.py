from __future__ import annotations

import pytest

from openblip.evaluate import VqaEvalRules, normalize_answer, vqa_accuracy, vqa_accuracy_simple, vqa_score

PRE, NOW = VqaEvalRules.PRE_2021, VqaEvalRules.SINCE_2021


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


# Where vqaEval.py before and since its 2021-03-11 change disagree, worked by hand.
# Leave-one-out accuracy with m of 10 human answers matching: 0, .3, .6, .9, then 1.
@pytest.mark.parametrize(
    ("prediction", "humans", "pre_2021", "since_2021"),
    [
        # ten identical "2": pre-2021 normalises the prediction ("Two" -> "2", 10 match); since
        # 2021 identical answers leave the prediction as it is ("Two" != "2")
        ("Two", ["2"] * 10, 1.0, 0.0),
        ("a dog", ["dog"] * 10, 1.0, 0.0),  # the article: the same story
        ("2", ["2"] * 10, 1.0, 1.0),
        # raw human answers that need digit/article normalisation: pre-2021 leaves them (no "two"
        # becomes "2": 0 match); since 2021 they become "2" (3 match: 3 x 2/3 + 7 x 1 over 10 = .9)
        ("2", ["two"] * 3 + ["yes"] * 7, 0.0, 0.9),
        ("the yes", ["Yes"] * 4 + ["no"] * 6, 0.0, 1.0),  # "Yes" lowercased only since 2021
        # stray whitespace in human answers: pre-2021 compares them unstripped ("yes " != "yes",
        # 2 match: 8 x 2/3 + 2 x 1/3 over 10 = .6); since 2021 stripped, all identical, 10 match
        ("yes", ["yes "] * 8 + ["yes"] * 2, 0.6, 1.0),
        (" yes\n", ["yes"] * 10, 1.0, 1.0),  # the prediction is stripped by both
    ],
)
def test_pre_2021_and_2021_rules(prediction: str, humans: list[str], pre_2021: float, since_2021: float) -> None:
    assert vqa_accuracy(prediction, humans) == pytest.approx(pre_2021, abs=1e-12)  # the default
    assert vqa_accuracy(prediction, humans, rules=PRE) == pytest.approx(pre_2021, abs=1e-12)
    assert vqa_accuracy(prediction, humans, rules=NOW) == pytest.approx(since_2021, abs=1e-12)


def test_rules_reach_the_score_and_the_simple_form() -> None:
    predictions = {1: "Two", 2: "yes"}
    answers = {1: ["2"] * 10, 2: ["yes "] * 8 + ["yes"] * 2}
    assert vqa_score(predictions, answers) == pytest.approx(80.0, abs=1e-9)  # (1 + .6) / 2
    assert vqa_score(predictions, answers, rules=NOW) == pytest.approx(50.0, abs=1e-9)  # (0 + 1) / 2
    assert vqa_accuracy_simple("Two", ["2"] * 10, rules=NOW) == 0.0
    assert vqa_accuracy_simple("2", ["two"] * 3 + ["yes"] * 7, rules=NOW) == 1.0
    with pytest.raises(ValueError, match="pre-2021"):
        vqa_accuracy("2", ["2"] * 10, rules=NOW, normalize_references=True)
    with pytest.raises(TypeError, match="VqaEvalRules"):
        vqa_accuracy("2", ["2"] * 10, rules="2021")  # type: ignore[arg-type]
