import pytest

from openblip.text_cleaning import pre_caption, pre_question


@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("A man riding a horse.", "a man riding a horse"),
        # every listed character becomes a space, runs collapse, ends are trimmed
        ('He said "Hi!" (twice)*#:;~', "he said hi twice"),
        ("a.b!c", "a b c"),
        # kept: comma, apostrophe, question mark, hyphen, slash, @
        ("Don't, stop? well-known / x@y", "don't, stop? well-known / x@y"),
        # a single tab or newline is not collapsed (only runs of 2+ are)
        ("a\tb", "a\tb"),
        ("a\t\tb", "a b"),
        ("line one\n", "line one"),
        ("line one\n\n", "line one"),
        # leading newline survives: only '\n' on the right and ' ' on both ends are stripped
        ("\nstart", "\nstart"),
        ("  lead and trail  ", "lead and trail"),
        # \s is Unicode-aware: two non-breaking spaces collapse, one survives
        ("a\u00a0\u00a0b", "a b"),
        ("a\u00a0b", "a\u00a0b"),
        ("ÉCOLE Ünïcödé", "école ünïcödé"),
        ("", ""),
        ("...!!!", ""),
    ],
)
def test_pre_caption(caption: str, expected: str) -> None:
    assert pre_caption(caption) == expected


def test_pre_caption_truncates_on_single_spaces() -> None:
    assert pre_caption("One two three four", max_words=2) == "one two"
    assert pre_caption("a.b.c.d", max_words=3) == "a b c"
    # a tab-joined pair is one "word" for the truncation (split on " " only)
    assert pre_caption("a\tb c d", max_words=2) == "a\tb c"
    assert pre_caption("exactly three words", max_words=3) == "exactly three words"
    assert pre_caption("x y", max_words=0) == ""
    long = " ".join(f"w{i}" for i in range(80))
    assert pre_caption(long).split(" ") == [f"w{i}" for i in range(50)]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What's up?!", "what's up?"),
        ("Is it (red).", "is it red"),
        ("a.b", "ab"),  # deleted, not replaced by a space
        # no whitespace collapse; only trailing spaces stripped
        ("  Hello  World  ", "  hello  world"),
        ("hello\n", "hello\n"),
        ('How many "dogs" are there?', "how many dogs are there?"),
        ("", ""),
    ],
)
def test_pre_question(question: str, expected: str) -> None:
    assert pre_question(question) == expected


def test_pre_question_truncation_counts_empty_words() -> None:
    # "a  b c".split(" ") == ["a", "", "b", "c"]: the empty string counts as a word
    assert pre_question("a  b c", max_words=2) == "a "
    assert pre_question("one two three", max_words=2) == "one two"


def test_negative_max_words_rejected() -> None:
    with pytest.raises(ValueError, match="max_words"):
        pre_caption("a b", max_words=-1)
    with pytest.raises(ValueError, match="max_words"):
        pre_question("a b", max_words=-1)
