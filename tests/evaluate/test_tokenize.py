from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from openblip.evaluate.tokenize import (
    COCO_PUNCTUATION,
    _scan,
    coco_tokenize,
    coco_tokenize_corpus,
    ptb_tokenize,
)

# Expected outputs were produced by the Stanford CoreNLP 3.4.1 PTBTokenizer that pycocoevalcap runs
# (and are re-checked against it by test_matches_java_ptbtokenizer when Java is available).
KNOWN = [
    ("A man riding a wave on top of a surfboard.", "a man riding a wave on top of a surfboard"),
    ("The cat's toy isn't on the mat; it's under the table!", "the cat 's toy is n't on the mat it 's under the table"),
    ("\"A quoted\" phrase with 'single quotes' here.", "a quoted phrase with single quotes here"),
    # -lowerCase turns -LRB- into -lrb-, which the upper-case punctuation list no longer removes.
    ("A man (in a hat) and [red] {x}.", "a man -lrb- in a hat -rrb- and -lsb- red -rsb- -lcb- x -rcb-"),
    ("She said -- wait... what?   Multiple   spaces.", "she said wait what multiple spaces"),
    (
        "and/or 3/4 of a 1,000 pizzas cost $3.50 at 5:30 p.m. in the U.S. with Mr. Smith etc.",
        "and/or 3/4 of a 1,000 pizzas cost $ 3.50 at 5:30 p.m. in the u.s. with mr. smith etc.",
    ),
    ("Dogs' bowls. Don't can't won't gonna I'm", "dogs bowls do n't ca n't wo n't gon na i 'm"),
    ("cannot 'twas y'all rock'n'roll o'clock", "can not 't was y' all rock 'n' roll o'clock"),
    ("A café — naïve “curly” ‘quotes’", "a café naïve curly quotes"),
    ("50% * stars & ampersand < > = + #tag @user", "50 % * stars & ampersand < > = + #tag @user"),
    ("hello!!! what?! dog.cat approx. No. 5", "hello !!! what ?! dog.cat approx no. 5"),
    ("A 2.5-year-old kid's bike-riding.", "a 2.5-year-old kid 's bike-riding"),
    ("the ill. man in Ill. and Co.a", "the ill man in ill. and co. a"),
    ("1 1/2 cups", "1\u00a01/2 cups"),
    ("cafe\u0301 soft\u00adhyphen", "cafe\u0301 softhyphen"),  # combining accent kept, soft hyphen dropped
    ("......six", "six"),
    ("", ""),
]


@pytest.mark.parametrize(("caption", "expected"), KNOWN)
def test_known_tokenizations(caption: str, expected: str) -> None:
    assert " ".join(coco_tokenize(caption)) == expected


def test_ptb_tokenize_keeps_punctuation_and_lowercases_escapes() -> None:
    assert ptb_tokenize("A dog (big).") == ["a", "dog", "-lrb-", "big", "-rrb-", "."]
    assert ptb_tokenize('He said "hi".') == ["he", "said", "``", "hi", "''", "."]
    assert not set(coco_tokenize("A dog, (big); yes: no! ok? -- ... `x'")) & COCO_PUNCTUATION


def test_next_caption_can_change_a_final_acronym() -> None:
    # The Java lexer reads all captions of a batch as one stream: "b." followed by a line starting
    # with "The " is an acronym ending a sentence and loses its period.
    assert coco_tokenize("plan b.") == ["plan", "b."]
    assert coco_tokenize_corpus(["plan b.", "The cat"]) == [["plan", "b"], ["the", "cat"]]
    assert coco_tokenize_corpus(["plan b.", "the cat"]) == [["plan", "b."], ["the", "cat"]]
    assert coco_tokenize_corpus(["plan b."]) == [["plan", "b."]]


def test_newlines_inside_a_caption_are_spaces() -> None:
    assert coco_tokenize("a dog\nrunning") == ["a", "dog", "running"]
    assert coco_tokenize_corpus(["a dog\nrunning", "x"]) == [["a", "dog", "running"], ["x"]]


_POOL = """a an the A The THE man woman dog dogs dog's dogs' cat's it's It's isn't don't can't won't I'm
we're they've you'll he'd Mr. Mrs. Dr. St. Mt. U.S. U.S.A. e.g. i.e. etc. vs. a.m. p.m. No. Jan. approx.
ca. fig. Inc. Co. Ltd. jr. Ave. st. mt. co. b. A. I. Ill. ill. Wash. wash. Pa. pa. black-and-white
2-year-old x-ray t-shirt well-known e-mail anti-war 1 2 10 1,000 3.5 2.50 5:30 3/4 1/2 1990 '90s 2nd
10am 4x4 12/25/2020 -5 +3 .5 ( ) [ ] { } " ' ` `` '' , . ; : ! ? !! ?! ... .. .... - -- --- ----- / \\
* ** + = % $ # @ & < > ~ ^ | _ $5 US$5 50% #1 #tag @home A&B AT&T and/or b/w a/b/c c++ C# :) :( ;-)
café naïve über São straße gonna wanna cannot gotta lemme 'tis 'twas dunno o'clock ma'am y'all
rock'n'roll 'em O'Neill d'Artagnan “curly” ‘single’ — – … ½ ° × • © €5 £3 ¢ hello!world dog.cat cat.
dog, bird; fish: wow! why? Really?! www.google.com http://x.org/a me@x.com""".split()  # noqa: SIM905
_WORDS = "sitting on top of with near next to in front riding holding small large red Then The He It".split()  # noqa: SIM905


def _generated_captions(n: int, seed: int) -> list[str]:
    """Random captions mixing plain words with the fragments that stress the lexer rules."""
    rng = random.Random(seed)
    captions = []
    for _ in range(n):
        text = ""
        for _ in range(rng.randint(3, 14)):
            word = rng.choice(_POOL) if rng.random() < 0.5 else rng.choice(_WORDS)
            text += (rng.choice([" ", " ", " ", "", "  "]) if text else "") + word
        captions.append(text)
    return captions


def test_fast_path_gives_the_same_tokens_as_the_rules() -> None:
    captions = _generated_captions(300, seed=1) + [c for c, _ in KNOWN]
    captions += ["A man riding a horse on a beach.", "Two dogs, one cat; three birds: wow! really? yes."]
    for caption in captions:
        assert _scan(caption, "\n", fast=True) == _scan(caption, "\n", fast=False), caption


def test_matches_java_ptbtokenizer(java_coco_tokenize: Callable[[list[str]], list[list[str]]]) -> None:
    """Our tokens equal pycocoevalcap's (Java) on the hand cases and ~600 generated captions."""
    captions = [c for c, _ in KNOWN if c] + _generated_captions(600, seed=7)
    expected = java_coco_tokenize(captions)
    ours = coco_tokenize_corpus(captions)
    mismatches = [(c, e, o) for c, e, o in zip(captions, expected, ours) if e != o]
    assert not mismatches, mismatches[:5]
