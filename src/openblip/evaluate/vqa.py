"""VQA accuracy as the official VQA evaluation script computes it, in either of its two versions.

Source: ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of GT-Vision-Lab/VQA (the script behind
the VQA v2 leaderboard, which BLIP's test-dev numbers come from).  Its commit a013f00 of 2021-03-11
("Fixed processing answers bug") changed which answers it normalises; `VqaEvalRules` picks the
version.  Per question, with ``VqaEvalRules.PRE_2021`` (the default: the script as BLIP and LAVIS
used it, and the copy LAVIS ships in ``lavis/common/vqa_tools/vqa_eval.py``):

1. The predicted answer has newlines and tabs turned into spaces and is stripped, then goes through
   ``processPunctuation`` and ``processDigitArticle`` (reproduced by :func:`normalize_answer`).
2. The human answers are compared *as stored* (not even stripped), except that when they are not
   all identical each goes through ``processPunctuation`` only.  VQA v2 annotations already hold
   normalised answers, which is why the script never lowercases or maps digits on them; pass
   ``normalize_references=True`` to run the full normalisation on raw answers of another dataset.

With ``VqaEvalRules.SINCE_2021`` (the script today): the prediction and the human answers have
newlines and tabs turned into spaces and are stripped; then only when the human answers are not all
identical do both they and the prediction go through ``processPunctuation`` and
``processDigitArticle``; when they are all identical the prediction is compared unnormalised ("Two"
against ten "2" scores 0 there, 1 with the pre-2021 rules).

3. Accuracy (both) = the mean, over the 10 ways of leaving one human out, of
   ``min(1, #remaining humans who gave the predicted answer / 3)``.  That leave-one-out average is
   close to, but not the same as, the formula usually quoted, ``min(1, #humans / 3)``: with 3
   matching humans out of 10 it is 0.9, not 1 (see :func:`vqa_accuracy_simple` for the quoted one).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from openblip.evaluate._checks import check_same_keys, check_strings

__all__ = ["VqaEvalRules", "normalize_answer", "vqa_accuracy", "vqa_accuracy_simple", "vqa_score"]

K = TypeVar("K", bound=Hashable)


class VqaEvalRules(enum.Enum):
    """Which version of GT-Vision-Lab/VQA's vqaEval.py the accuracy reproduces (module docstring)."""

    PRE_2021 = "pre-2021"  # before commit a013f00 (2021-03-11): BLIP's and LAVIS's numbers
    SINCE_2021 = "2021"  # "Fixed processing answers bug" and after: the script as it is today


# Characters processPunctuation deletes or replaces with a space (not the period, which has its
# own rule, and not the apostrophe or colon, which the current script leaves alone).
_PUNCTUATION = tuple(';/[]"{}()=+\\_-><@`,?!')
# The script's period pattern is "(?!<=\d)(\.)(?!\d)": a typo for a look-behind that in fact
# never restricts anything, so it deletes every period not followed by a digit.
_PERIOD = re.compile(r"\.(?!\d)")
# It passes re.UNICODE (= 32) positionally to re.sub, where it lands in the ``count`` argument:
# at most 32 periods are removed.  Kept, since it is what the published numbers used.
_PERIOD_MAX_REMOVALS = 32
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")

_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})

# The script's contraction table: written without apostrophe -> with apostrophe.  Applied after
# lowercasing, so the entries with a capital "I" can never fire; they are kept to stay faithful.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip


def _process_punctuation(text: str) -> str:
    """vqaEval.processPunctuation: each mark is deleted when it touches a space somewhere in the
    answer (or when the answer has a digit,digit group), otherwise replaced by a space; then
    periods not followed by a digit are deleted."""
    out = text
    has_digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in _PUNCTUATION:
        # The test looks at the original text, the replacement at the text so far (as the script).
        touches_space = p + " " in text or " " + p in text
        out = out.replace(p, "" if touches_space or has_digit_comma else " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX_REMOVALS)


def _process_digit_article(text: str) -> str:
    """vqaEval.processDigitArticle: lowercase, number words to digits, drop articles, restore
    apostrophes of common contractions."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words)


def normalize_answer(answer: str) -> str:
    """The official normalisation of a predicted answer: "Two dogs." -> "2 dogs",
    "the Yes!" -> "yes", "dont" -> "don't"."""
    return _normalize(_strip(answer))


def _compared(
    prediction: str, human_answers: Sequence[str], rules: VqaEvalRules, normalize_references: bool
) -> tuple[str, list[str]]:
    """The prediction and the human answers as the chosen script version compares them."""
    if not isinstance(rules, VqaEvalRules):
        raise TypeError(f"rules must be a VqaEvalRules, got {rules!r}")
    if rules is VqaEvalRules.PRE_2021:
        if normalize_references:
            return normalize_answer(prediction), [normalize_answer(a) for a in human_answers]
        if len(set(human_answers)) > 1:
            return normalize_answer(prediction), [_process_punctuation(a) for a in human_answers]
        return normalize_answer(prediction), list(human_answers)
    if normalize_references:
        raise ValueError("normalize_references applies to the pre-2021 rules; the 2021 script normalises them itself")
    pred = _strip(prediction)
    refs = [_strip(a) for a in human_answers]
    if len(set(refs)) > 1:
        return _normalize(pred), [_normalize(a) for a in refs]
    return pred, refs


def _strip(answer: str) -> str:
    return answer.replace("\n", " ").replace("\t", " ").strip()


def _normalize(answer: str) -> str:
    return _process_digit_article(_process_punctuation(answer))


def vqa_accuracy(
    prediction: str,
    human_answers: Sequence[str],
    *,
    normalize_references: bool = False,
    rules: VqaEvalRules = VqaEvalRules.PRE_2021,
) -> float:
    """Official VQA accuracy of one predicted answer, in [0, 1].

    The mean over each human answer left out of ``min(1, matches among the others / 3)``.  With the
    usual 10 answers and m of them equal to the (normalised) prediction this is 0 for m = 0, 0.3
    for 1, 0.6 for 2, 0.9 for 3 and 1 from 4 on.  A single human answer always gives 0 (nobody is
    left to agree), as in the script.  ``rules``: which version of the script (VqaEvalRules; the
    pre-2021 one by default, as BLIP's and LAVIS's numbers).
    """
    check_strings(human_answers, "human answers")
    pred, refs = _compared(prediction, human_answers, rules, normalize_references)
    matches = sum(ref == pred for ref in refs)
    total = 0.0
    for ref in refs:
        others_matching = matches - (ref == pred)
        total += min(1.0, others_matching / 3)
    return total / len(refs)


def vqa_accuracy_simple(
    prediction: str,
    human_answers: Sequence[str],
    *,
    normalize_references: bool = False,
    rules: VqaEvalRules = VqaEvalRules.PRE_2021,
) -> float:
    """The commonly quoted form ``min(1, #humans who gave the answer / 3)`` (also the soft target
    of VQA training), with the same normalisation as :func:`vqa_accuracy`."""
    check_strings(human_answers, "human answers")
    pred, refs = _compared(prediction, human_answers, rules, normalize_references)
    return min(1.0, sum(ref == pred for ref in refs) / 3)


def vqa_score(
    predictions: Mapping[K, str],
    answers: Mapping[K, Sequence[str]],
    *,
    normalize_references: bool = False,
    rules: VqaEvalRules = VqaEvalRules.PRE_2021,
) -> float:
    """Overall VQA accuracy in percent (0-100, unrounded), as the script's ``accuracy['overall']``
    before its rounding to two decimals: the mean of :func:`vqa_accuracy` over the questions.

    ``predictions`` maps a question id to the predicted answer and ``answers`` the same ids to the
    human answers; every prediction needs answers, and answers without a prediction are an error
    too (a partial submission would silently score a different subset).
    """
    check_same_keys(predictions, answers, "answers")
    total = 0.0
    for key, prediction in predictions.items():
        if not isinstance(prediction, str):
            raise TypeError(f"prediction for question {key!r} must be a str, got {type(prediction).__name__}")
        check_strings(answers[key], f"human answers of question {key!r}")
        total += vqa_accuracy(prediction, answers[key], normalize_references=normalize_references, rules=rules)
    return 100.0 * total / len(predictions)
