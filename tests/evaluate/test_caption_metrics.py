from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from openblip.evaluate import METRIC_NAMES, bleu, caption_scores, cider_d, evaluate_captions, rouge_l

# bleu_scorer.py's smoothing: (matches + 1e-15) / (total + 1e-9).
TINY, SMALL = 1e-15, 1e-9


def test_bleu_identical_caption_is_one() -> None:
    scores = bleu(["a man riding a horse"], [["a man riding a horse"]])
    assert scores.corpus == pytest.approx((1.0, 1.0, 1.0, 1.0), abs=1e-8)
    assert scores.per_item[0] == pytest.approx(scores.corpus, abs=1e-12)


def test_bleu_brevity_penalty_and_missing_ngrams() -> None:
    # 2 words against a 5-word reference: all unigrams and the bigram match, there are no
    # trigrams at all; brevity penalty exp(1 - 5/2).
    scores = bleu(["a man"], [["a man riding a horse"]]).corpus
    penalty = math.exp(1 - 5 / 2)
    assert scores[0] == pytest.approx(penalty, rel=1e-8)
    assert scores[1] == pytest.approx(penalty, rel=1e-8)
    # No trigram: the smoothed precision is 1e-15 / 1e-9 = 1e-6, and BLEU-3 its cube root.
    assert scores[2] == pytest.approx((TINY / SMALL) ** (1 / 3) * penalty, rel=1e-6)
    assert scores[3] == pytest.approx((TINY / SMALL) ** (2 / 4) * penalty, rel=1e-6)


def test_bleu_clips_counts_and_uses_the_closest_reference_length() -> None:
    # "the" x4 against "the cat": 1 clipped match out of 4, candidate longer -> no penalty.
    assert bleu(["the the the the"], [["the cat"]]).corpus[0] == pytest.approx(0.25, rel=1e-8)
    # Length 4 against references of length 2 and 6: a tie, and the shorter one (2) is used, so
    # there is no brevity penalty even though the longer reference would give one.
    assert bleu(["a b c d"], [["a b", "a b c d e f"]]).corpus[0] == pytest.approx(1.0, rel=1e-8)
    # Length 4 against 5 and 9: closest is 5 -> penalty exp(1 - 5/4).
    expected = math.exp(1 - 5 / 4)
    assert bleu(["a b c d"], [["a b c d e", "a b c d e f g h i"]]).corpus[0] == pytest.approx(expected, rel=1e-8)


def test_bleu_corpus_pools_counts_instead_of_averaging() -> None:
    # Item 1: 4/4 unigrams; item 2: 0/2.  Pooled: 4/6, lengths 6 vs 6.
    scores = bleu(["a b c d", "x y"], [["a b c d"], ["p q"]])
    assert scores.corpus[0] == pytest.approx(4 / 6, rel=1e-8)
    assert scores.per_item[0][0] == pytest.approx(1.0, rel=1e-8)
    assert scores.per_item[1][0] == pytest.approx(0.0, abs=1e-6)


def test_rouge_l_by_hand() -> None:
    # LCS("a man riding", "a man is riding a horse") = 3: P = 1, R = 1/2.
    p, r, b2 = 1.0, 0.5, 1.2**2
    assert rouge_l("a man riding", ["a man is riding a horse"]) == pytest.approx((1 + b2) * p * r / (r + b2 * p))
    # Best precision and best recall are taken over references separately: "a b" has R = 1 (P = 1/2),
    # the long one P = 1 (R = 1/2); combined this gives 1 although no single reference does.
    assert rouge_l("a b c d", ["a b", "a x b y c z d w"]) == pytest.approx(1.0)
    assert rouge_l("x y", ["a b"]) == 0.0
    with pytest.raises(ValueError, match="at least one reference"):
        rouge_l("a", [])


def test_cider_d_exact_match_with_disjoint_vocabulary_is_ten() -> None:
    # Two items, each candidate equal to its only reference, no n-gram shared across items:
    # every n-gram has document frequency 1, the TF-IDF vectors are equal, cosine 1 for n = 1..4,
    # no length penalty -> 10 * mean(1, 1, 1, 1) = 10.
    refs = [["a red ball on grass"], ["two blue cubes near water"]]
    assert cider_d(["a red ball on grass", "two blue cubes near water"], refs) == pytest.approx([10.0, 10.0])
    # A candidate sharing no n-gram with its references scores 0.
    assert cider_d(["zzz qqq", "two blue cubes near water"], refs)[0] == 0.0


def test_cider_d_length_penalty() -> None:
    # Same n-grams for n = 1..4 except the longer candidate has an extra word at the end.  With a
    # single reference the penalty factor is exp(-delta^2 / (2 * 6^2)) on each n-gram order.
    refs = [["a red ball on the grass"], ["two blue cubes near water"]]
    exact = cider_d(["a red ball on the grass", "two blue cubes near water"], refs)[0]
    longer = cider_d(["a red ball on the grass today", "two blue cubes near water"], refs)[0]
    assert exact == pytest.approx(10.0)
    assert 0 < longer < exact * math.exp(-1 / 72) + 1e-12


def test_caption_scores_tokenizes_raw_captions() -> None:
    preds = {1: "A man riding a horse.", "img-2": "Two DOGS playing!"}
    refs = {1: ["a man riding a horse"], "img-2": ["two dogs playing"]}
    scores = caption_scores(preds, refs)
    assert list(scores) == list(METRIC_NAMES)
    assert scores["BLEU-1"] == pytest.approx(1.0, abs=1e-8)
    assert scores["BLEU-4"] == pytest.approx(1.0, abs=1e-8)
    assert scores["ROUGE-L"] == pytest.approx(1.0)
    per_item = evaluate_captions(preds, refs).per_item
    assert set(per_item) == {1, "img-2"}
    assert per_item["img-2"]["ROUGE-L"] == pytest.approx(1.0)


def test_caption_scores_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same keys"):
        caption_scores({1: "a"}, {2: ["a"]})
    with pytest.raises(ValueError, match="references for 1 are empty"):
        caption_scores({1: "a"}, {1: []})
    with pytest.raises(TypeError, match="references for 1 must be a sequence of str"):
        caption_scores({1: "a"}, {1: "a dog"})
    with pytest.raises(TypeError, match="prediction for 'x' must be a str"):
        caption_scores({"x": None}, {"x": ["a"]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="no predictions"):
        caption_scores({}, {})


# ~30 caption sets with the things that make tokenization and scoring differ: punctuation,
# capitals, clitics, numbers, repeated words, quotes, brackets, hyphens, abbreviations, very short
# and empty predictions, one to five references.
COCO_LIKE: list[tuple[str, list[str]]] = [
    ("A man riding a wave on top of a surfboard.", ["A man riding a wave on top of a surfboard.",
     "A person surfing a large wave in the ocean", "a surfer rides a big wave.",
     "Surfer riding the waves on his board.", "A man on a surfboard riding a wave."]),
    ("a dog dog dog sitting on a couch", ["A dog sitting on a couch.", "A brown dog is resting on the sofa.",
     "The dog is sitting on a red couch"]),
    ("Two giraffes standing next to each other in a field.", ["Two giraffes standing in a grassy field.",
     "A pair of giraffes next to trees", "Giraffes stand together in the savanna."]),
    ("A kitchen with a stove, a sink, and a refrigerator.", ["A kitchen with white cabinets and a stove.",
     "A clean kitchen, with a sink & a fridge.", "The kitchen has a stove; a sink; and a refrigerator."]),
    ("The cat's sleeping on the laptop's keyboard", ["A cat sleeping on a laptop keyboard.",
     "The cat is lying on top of the laptop.", "A cat that's asleep on a computer."]),
    ("A man (in a hat) holding an umbrella", ["A man holding an umbrella in the rain.",
     "A man in a hat with a black umbrella.", "Person walking with umbrella [raining]."]),
    ("It isn't a bus, it's a train!", ["A train pulling into the station.", "A red train on the tracks.",
     "The train isn't moving"]),
    ("A black-and-white photo of a 2-year-old boy.", ["A black and white photo of a little boy.",
     "An old photograph of a toddler.", "A black-and-white picture of a young child"]),
    ("Pizza with 3 toppings costs $5.50", ["A pizza with three toppings.", "A pizza on a plate.",
     "The pizza costs 5 dollars and 50 cents"]),
    ("a a a a a", ["A woman eating a sandwich.", "A lady eats a large sandwich"]),
    ("...", ["A plate of food on a table.", "Food on a plate"]),
    ("Street sign for Main St. and 5th Ave.", ["A street sign on a pole.", "Signs for Main St. and 5th Ave.",
     "The corner of Main Street and Fifth Avenue"]),
    ("A GROUP OF PEOPLE FLYING KITES ON THE BEACH", ["People flying kites on a beach.",
     "A group of people fly kites at the beach.", "Several kites in the sky over a sandy beach"]),
    ("\"Stop\" sign near a road", ["A red stop sign by the road.", "A stop sign next to a street.",
     "The sign says \"STOP\"."]),
    ("A baseball player swinging a bat at a ball", ["A baseball player swings his bat.",
     "A batter hits a ball during a baseball game.", "A man swinging a bat at a baseball game",
     "A baseball player at bat", "The batter is swinging at the pitch."]),
    ("Elephants walking", ["Three elephants walking in a line.", "A herd of elephants walks across a field."]),
    ("A bathroom with a toilet and a sink.", ["A bathroom with a toilet and a sink."]),
    ("a woman's hand holding a phone -- it's an iPhone", ["A woman holding a cell phone.",
     "Someone's hand holds a smartphone.", "A hand holding an iPhone"]),
    ("A clock tower, at 10:30, in the city", ["A clock tower in the middle of a city.",
     "A tall tower with a clock showing 10:30.", "The clock on the tower reads half past ten"]),
    ("Horses graze; sheep rest.", ["Horses grazing in a field.", "Some horses and sheep in a pasture.",
     "Animals on a farm"]),
    ("A bowl of fruit: apples, bananas & oranges", ["A bowl full of apples, bananas and oranges.",
     "Fruit in a bowl on a table.", "A bowl of mixed fruit"]),
    ("The skateboarder doesn't fall", ["A skateboarder doing a trick.", "A young man on a skateboard.",
     "A kid skateboarding down a ramp", "The skater didn't fall off"]),
    ("two zebras", ["Two zebras standing in the grass.", "A pair of zebras grazing"]),
    ("A man and a woman cutting a cake.", ["A bride and groom cutting their wedding cake.",
     "A couple cuts a cake together.", "A man and woman cut a cake"]),
    ("cows cows cows cows", ["Cows standing in a field.", "A herd of cows on a farm"]),
    ("A plane flying over the U.S. flag", ["An airplane flying in the sky.", "A jet flies over an American flag.",
     "A plane above the U.S. flag"]),
    ("Snow-covered mountains behind a skier!!", ["A skier on a snowy mountain.", "A person skiing down a slope.",
     "Skier with snow covered mountains behind"]),
    ("A laptop, a mouse and a cup of coffee on a desk", ["A laptop and a mouse on a desk.",
     "A desk with a computer and coffee mug", "A cup of coffee next to a laptop on a table"]),
    ("A teddy bear 'sitting' on a bed", ["A teddy bear on a bed.", "A stuffed animal sitting on the bed",
     "A brown teddy bear lying on a pillow"]),
    ("", ["A man riding a bike.", "Someone on a bicycle"]),
    ("A firetruck parked on the street", ["A red fire truck parked on a street.", "A fire engine on the road.",
     "A firetruck is parked in the city"]),
]  # fmt: skip


def test_matches_pycocoevalcap(java_coco_tokenize: Callable[[list[str]], list[list[str]]]) -> None:
    """Same scores as pycocoevalcap's PTBTokenizer (Java) + Bleu(4) + Rouge() + Cider() on COCO-like
    caption sets: corpus and per-item, to 1e-9 (the observed difference is at rounding level)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    keys = [f"img{i}" for i in range(len(COCO_LIKE))]
    predictions = {k: pred for k, (pred, _) in zip(keys, COCO_LIKE)}
    references = {k: refs for k, (_, refs) in zip(keys, COCO_LIKE)}

    # What COCOEvalCap.evaluate does: one tokenizer call for all references, one for predictions.
    flat = java_coco_tokenize([r for k in keys for r in references[k]])
    gts: dict[str, list[str]] = {}
    for k in keys:
        gts[k] = [" ".join(flat.pop(0)) for _ in references[k]]
    res = {k: [" ".join(tokens)] for k, tokens in zip(keys, java_coco_tokenize([predictions[k] for k in keys]))}

    bleu_corpus, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    rouge_corpus, rouge_items = Rouge().compute_score(gts, res)
    cider_corpus, cider_items = Cider().compute_score(gts, res)
    theirs = dict(zip(METRIC_NAMES, [*bleu_corpus, rouge_corpus, cider_corpus]))

    ours = evaluate_captions(predictions, references)
    for name in METRIC_NAMES:
        assert ours.corpus[name] == pytest.approx(float(theirs[name]), abs=1e-9, rel=1e-9), name
    for i, key in enumerate(keys):
        item = ours.per_item[key]
        for n in range(4):
            assert item[f"BLEU-{n + 1}"] == pytest.approx(bleu_items[n][i], abs=1e-9, rel=1e-9), key
        assert item["ROUGE-L"] == pytest.approx(float(rouge_items[i]), abs=1e-9, rel=1e-9), key
        assert item["CIDEr"] == pytest.approx(float(cider_items[i]), abs=1e-9, rel=1e-9), key
    # Not a vacuous comparison: the set has both good and bad captions.
    assert 0.3 < theirs["CIDEr"] < 3.0
    assert min(cider_items) == 0.0
