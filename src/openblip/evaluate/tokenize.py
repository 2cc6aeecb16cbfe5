"""A pure-Python stand-in for the COCO caption tokenizer.

pycocoevalcap (the coco-caption toolkit BLIP evaluates with) does not score raw captions: it first
pipes every caption through the Stanford PTBTokenizer from ``stanford-corenlp-3.4.1.jar``
(``java ... PTBTokenizer -preserveLines -lowerCase``) and then drops the tokens in its
``PUNCTUATIONS`` list (``tokenizer/ptbtokenizer.py``).  Reproducing that step matters: CIDEr-D and
BLEU are computed on n-grams of these tokens, so "dog's" must become ``dog 's`` and "don't"
``do n't`` exactly as the Java lexer splits them.

This module reimplements the part of the PTBLexer (a JFlex grammar) that captions exercise, as a
longest-match scanner over a rule list, with the same tie-break as JFlex (the longest match wins;
between equally long matches the earlier rule wins, and a rule's trailing context counts towards
its length).  The rules and their behaviour were checked against the 3.4.1 jar; see
``tests/evaluate/test_tokenize.py`` for the inputs compared with the real Java tokenizer.

Quirks of 3.4.1 that are reproduced on purpose, because they change scores:

* ``-lowerCase`` also lowercases the bracket escapes, so ``(`` becomes ``-lrb-``, which is *not* in
  the punctuation list (that list has ``-LRB-``) and survives as a word; so do ``-lsb-``/``-rsb-``
  (``[``/``]``) and ``-lcb-``/``-rcb-``.
* Runs such as ``!!!``, ``?!`` or ``-----`` and symbols (``%``, ``$``, ``&``, ``#``, ``*``, ``+``,
  ``=``, ``<``, ``>``, ``/``) survive as tokens.
* Known abbreviations and single letters keep their period (``mr.``, ``st.``, ``u.s.``, ``etc.``;
  ``ill.`` only as "Ill."), other words lose it.  ``dog.the`` (no space) stays one token.
* ``cannot``, ``gonna``, ``wanna``, ``gotta``, ``gimme``, ``lemme``, ``'tis``, ``'twas`` are split.
* A fraction after a whole number (``1 1/2``) is one token joined by a no-break space (U+00A0).
* The Java lexer reads a whole batch as one stream, so a caption's last token can depend on the
  next caption (see :func:`coco_tokenize_corpus`).

Known differences (none seen in caption-like text): phone numbers, URLs beyond the plain
``http://...``/``www.``/``name.com`` shapes, HTML entities other than ``&amp; &quot; &lt; &gt;``,
and a few glued forms such as an abbreviation directly followed by a hyphenated number
(``etc.-5``).  pycocoevalcap itself misaligns its output when a caption contains a line break other
than ``\n`` (``\r``, U+2028...); here those are plain whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["COCO_PUNCTUATION", "coco_tokenize", "coco_tokenize_corpus", "ptb_tokenize"]

# pycocoevalcap/tokenizer/ptbtokenizer.py: the tokens dropped after PTB tokenization.  Compared
# with the *lowercased* tokens, so the bracket escapes in it never match (see module docstring).
COCO_PUNCTUATION: frozenset[str] = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# ---------------------------------------------------------------------------------------------
# Character classes (JFlex %caseless does not apply inside character classes, so classes that
# are case-sensitive in the lexer are written out case-sensitively here).


def _numeric_non_digits() -> str:
    """Characters Python's ``\\w`` counts as alphanumeric but Java counts as neither a letter nor
    a digit (vulgar fractions, superscripts, roman numerals...), escaped for a character class."""
    chars = (chr(c) for c in range(0x80, 0x10000))
    return "".join(re.escape(ch) for ch in chars if ch.isnumeric() and not ch.isdecimal())


_NOT_ALNUM = _numeric_non_digits()
# A letter (Java Character.isLetter), or a soft hyphen or combining accent, which the lexer's
# LETTER also accepts ("cafe\u0301" is one word).
_L = rf"(?:[^\W\d_{_NOT_ALNUM}]|[\u00ad\u0300-\u036f])"
_AL = rf"(?:[^\W_{_NOT_ALNUM}]|[\u00ad\u0300-\u036f])"  # a letter or a digit
_APOS = "['\u0092\u2019]"
_APOSX = "['\u0092\u2019\u0091\u2018\u201b]"  # apostrophes that may appear inside a word
_SPACE = "[ \t\u00a0\u2000-\u200a\u3000]"
_NEWLINE = "(?:\r\n|[\r\n\u2028\u2029\x0b\x0c\x85])"
_SPACENL = f"(?:{_SPACE}|{_NEWLINE})"
_WORD = rf"{_L}{_AL}*(?:[.!?]{_L}{_AL}*)*"
_REDAUX = rf"{_APOS}(?:[msdMSD]|[rR][eE]|[vV][eE]|[lL][lL])"
_ACRO = r"[A-Za-z](?:\.[A-Za-z])*"
_HYPHEN = "[-_\u058a\u2010\u2011]"
# Hyphenated words ("black-and-white", "2.5-year-old").
_HTHING = r"[A-Za-z0-9][A-Za-z0-9.,\u00ad]*(?:-(?:[A-Za-z0-9\u00ad]+|[A-Za-z](?:\.[A-Za-z])+\.))+"
# Letter/digit runs, possibly hyphenated ("10am", "o'clock", "café-bar").
_THING = rf"(?:[dDoOlL]{_APOSX}{_AL})?{_AL}+(?:{_HYPHEN}(?:[dDoOlL]{_APOSX}{_AL})?{_AL}+)*"

# Abbreviations that keep their period, as found by probing the 3.4.1 jar (the lexer's ABBREV1
# and ABBREV2 sets).  They differ in one way: "co.a" splits after an ABBREV1 ("co." "a") but
# "st.a" stays one word.  Words in the _CASED lists count only when capitalised ("Ill." but not
# "ill."), as in the lexer, because they are also common lowercase words.
_ABBREV1 = (
    "(?i:jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|mon|tue|tues|wed|thu|thurs|fri"
    "|ala|ariz|calif|colo|conn|ct|dak|fla|ga|ind|kan|kans|ky|md|mich|minn|mo|mont|neb|nev|okla|penn"
    "|tenn|va|vt|wis|wisc|wyo|inc|co|cos|corp|pty|ptys|ppty|ltd|plc|rt|bancorp|bhd|assn|univ|intl"
    "|sys|tel|est|ext|sq|jr|sr|bros|ed\\.d|ph\\.d|blvd|rd|esq|etc|al|seq|bldg)"
)
_ABBREV2 = (
    "(?i:mr|mrs|ms|dr|drs|prof|profs|sen|sens|rep|reps|atty|attys|lt|col|gen|messrs|gov|govs|adm"
    "|rev|maj|sgt|cpl|pvt|capt|st|ste|ave|pres|lieut|hon|brig|cmdr|comdr|pfc|spc|supt|supts|det|mt"
    "|adj|adv|asst|assoc|ens|insp|mlle|mme|msgr|sfc|vs|v|alex|wm|jos|cie|a\\.k\\.a|cf|treas|invt"
    "|elec|natl|mfg|mtg|dept|ph|ft)"
)


def _capitalised(words: str) -> str:
    """An alternation in which each word's first letter must be a capital and the rest is
    caseless, as the lexer's ``[A]rk`` reads under ``%caseless``."""
    return "|".join(f"{w[0]}(?i:{re.escape(w[1:])})" for w in words.split())


_CASED_ABBREV1 = _capitalised("Az Ark Del Ill La Mass Miss Ore Pa Tex Wash")
# Abbreviations recognised only before a number ("no. 5", "fig.2", "ca. 1990").
_NUMBER_ABBREVS = "(?i:ca|figs?|prop|nos?|art|pp|op)"
# Words after which an acronym's period is taken as a sentence end (the lexer's ACRONYM rule).
_SENTENCE_STARTERS = _capitalised(
    "About According Additionally After An A As At But Earlier He Her Here However If In It Last"
    " Many More Mr. Ms. Now Once One Other Our She Since So Some Such That The Then There These"
    " They This We When While What Yet You"
)

# Quote characters as the lexer normalises them ("latexQuotes", its default).
_LEFT_SINGLE = str.maketrans({"\u0091": "`", "\u2018": "`", "\u201b": "`", "\u2039": "`"})
_RIGHT_SINGLE = str.maketrans({"\u0092": "'", "\u2019": "'", "\u203a": "'"})
_LEFT_DOUBLE = str.maketrans({"\u0093": "``", "\u201c": "``", "\u00ab": "``"})
_RIGHT_DOUBLE = str.maketrans({"\u0094": "''", "\u201d": "''", "\u00bb": "''"})


def _quotes(tok: str, probably_left: bool) -> str:
    tok = tok.replace("'", "`").replace('"', "``") if probably_left else tok.replace('"', "''")
    for table in (_LEFT_SINGLE, _RIGHT_SINGLE, _LEFT_DOUBLE, _RIGHT_DOUBLE):
        tok = tok.translate(table)
    return tok


def _right_quote(tok: str) -> str:
    return _quotes(tok, probably_left=False)


def _left_quote(tok: str) -> str:
    return _quotes(tok, probably_left=True)


def _keep(tok: str) -> str:
    return tok


def _const(value: str) -> Callable[[str], str]:
    return lambda _tok: value


def _drop_soft_hyphens(tok: str) -> str:
    return tok.replace("\u00ad", "")


def _smiley(tok: str) -> str:
    return tok.replace("(", "-LRB-").replace(")", "-RRB-")


def _acronym_before_sentence(tok: str) -> str:
    # "plan B. Then ..." -> "B" + "." (a one-letter "acronym" is a letter), "U.S. The" -> "U.S." + ".".
    return tok[0] if len(tok) == 2 else tok


_CURRENCY = str.maketrans(
    {"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u00a4": "$", "\u20a0": "$", "\u20ac": "$"}
)
_FRACTIONS = str.maketrans({"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"})


@dataclass(frozen=True)
class _Rule:
    """One lexer rule.  ``pattern`` may contain a group named ``tok``: only that part is consumed
    and emitted, the rest is trailing context (which still counts towards the match length, as in
    JFlex).  ``emit`` maps the consumed text to the token, or to None to drop it."""

    pattern: re.Pattern[str]
    emit: Callable[[str], str | None]


def _rule(pattern: str, emit: Callable[[str], str | None] = _keep) -> _Rule:
    return _Rule(re.compile(pattern), emit)


# Order matters only between matches of equal length (earlier wins), as in the JFlex file.  Each
# alternative that the lexer writes as ``a|b`` inside one macro is its own rule here, because a
# Python alternation takes the first branch that matches, not the longest.  Patterns are
# case-sensitive and the lexer's %caseless literals are written ``(?i:...)``: Python's IGNORECASE
# would also widen character classes (``[^A-Za-z]`` would stop matching "İ"), which JFlex does not.
_RULES: tuple[_Rule, ...] = (
    _rule(r"(?i:c\+\+|[cf]#)"),
    # Assimilations: the lexer matches the whole word and pushes back its tail.
    _rule(r"(?P<tok>(?i:can))(?i:not)"),
    _rule(r"(?P<tok>'(?i:t))(?i:was)"),
    _rule(r"(?P<tok>'(?i:t))(?i:is)"),
    _rule(r"(?P<tok>(?i:gon|wan))(?i:na)"),
    _rule(r"(?P<tok>(?i:got))(?i:ta)"),
    _rule(r"(?P<tok>(?i:lem|gim))(?i:me)"),
    # SGML-like tags stay whole, spaces inside them become no-break spaces.
    _rule(
        r"<(?:[!?][A-Za-z-][^>\r\n]*|/[A-Za-z][\w:.-]*"
        r"|[A-Za-z][\w:.-]*(?: +[A-Za-z][\w:.-]*(?: *= *(?:'[^'\r\n]*'|\"[^\"\r\n]*\"|[A-Za-z][\w:.-]*))?)* */?) *>",
        lambda t: t.replace(" ", "\u00a0"),
    ),
    _rule("&(?i:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", _const("--")),
    _rule(r"&(?i:amp);", _const("&")),
    _rule(rf"(?P<tok>{_WORD}){_REDAUX}", _drop_soft_hyphens),
    _rule(rf"(?P<tok>[A-Za-z\u00ad]*[A-MO-Za-mo-z]\u00ad*)[nN]{_APOSX}[tT]", _drop_soft_hyphens),
    _rule(rf"(?P<tok>(?:{_ABBREV1}|{_CASED_ABBREV1})\.)[\s\S]"),
    _rule(_WORD, _drop_soft_hyphens),
    # Words with an apostrophe inside or at an edge that stay whole (rock 'n' roll, ma'am, '90s).
    _rule(rf"{_APOS}[nN]{_APOS}"),
    _rule(rf"{_APOS}[nN]"),
    _rule(rf"[lLdDjJ]{_APOS}"),
    _rule(rf"(?i:dunkin|somethin|ol){_APOS}"),
    _rule(rf"{_APOS}(?i:em|[2-9]0s|till|til|cause)"),
    _rule(r"(?i:cont'd\.|cont'd|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l)"),
    _rule(rf"[A-HJ-XZn]{_APOSX}{_L}{_L}+"),
    _rule(rf"{_L}+[aeiouyAEIOUY]{_APOSX}[aeiouA-Z]{_L}*"),
    _rule(rf"(?P<tok>[yY]{_APOS}){_L}"),
    _rule(r"(?i:https?)://[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]"),
    # A likely URL.  ",-_" in the second class is a character *range* in the lexer (so digits and
    # capitals are excluded there); it is kept as written to match it.
    _rule(
        r"(?:(?i:www)\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}"
        r"|(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+(?i:com|net|org|edu))"
        r"(?:/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"
    ),
    _rule(r"[a-zA-Z0-9][^ \t\n\f\r\"<>|(){}\u00a0]*@(?:[^ \t\n\f\r\"<>|(){}.\u00a0]+\.)*[^ \t\n\f\r\"<>|(){}.\u00a0]+"),
    _rule(r"@[a-zA-Z_][a-zA-Z_0-9]*"),
    _rule(rf"#{_L}+"),
    _rule(rf"(?P<tok>{_REDAUX})[^A-Za-z]", _right_quote),
    _rule(rf"(?P<tok>[nN]{_APOSX}[tT])[^A-Za-z]", _right_quote),
    _rule(r"\d{1,2}[-/]\d{1,2}[-/]\d{2,4}"),
    _rule(r"[-+]?\d*(?:[.:,\u00ad]\d+)+", _drop_soft_hyphens),
    _rule(r"[-+]?\d+", _drop_soft_hyphens),
    _rule("(?:\\d{1,4}[- \u00a0])?\\d{1,4}(?:\\\\?/|\u2044)\\d{1,4}", lambda t: t.replace(" ", "\u00a0")),
    _rule("[\u00bc\u00bd\u00be\u2153\u2154]", lambda t: t.translate(_FRACTIONS)),
    _rule(r"(?i:-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S&P-500|S&Ls|Cap'n|c'est)"),
    _rule(r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"),
    _rule(r"[A-Z]*\$"),
    _rule(r"#"),
    _rule(
        "[\u00a2\u00a3\u00a4\u00a5\u0080\u20a0\u20aa\u20ac\u20b9\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]",
        lambda t: t.translate(_CURRENCY),
    ),
    _rule(rf"(?P<tok>{_ACRO}\.){_SPACENL}+(?:{_SENTENCE_STARTERS}){_SPACENL}", _acronym_before_sentence),
    _rule(rf"(?:{_ABBREV1}|{_CASED_ABBREV1}|{_ABBREV2})\."),
    _rule(rf"(?P<tok>{_NUMBER_ABBREVS}\.){_SPACENL}?\d"),
    _rule(rf"{_ACRO}\."),
    _rule(rf"(?P<tok>'\d\d){_SPACENL}"),
    _rule(rf"(?P<tok>{_WORD}\.)[,;:]", _drop_soft_hyphens),
    _rule(r"(?P<tok>[<>]?[:;=][-o*']?[()DPdpO\\{@|\[\]])[^A-Za-z0-9]", _smiley),
    _rule(r'(?P<tok>"|&(?i:quot);)[A-Za-z0-9$]', _left_quote),
    _rule(r'"|&(?i:quot);', _right_quote),
    _rule("[+%&~^|\\\\\u2030\u2031<>]"),
    _rule(r"&(?i:lt);", _const("<")),
    _rule(r"&(?i:gt);", _const(">")),
    _rule(r"\(", _const("-LRB-")),
    _rule(r"\)", _const("-RRB-")),
    _rule(r"\[", _const("-LSB-")),
    _rule(r"\]", _const("-RSB-")),
    _rule(r"\{", _const("-LCB-")),
    _rule(r"\}", _const("-RCB-")),
    _rule(r"-+", lambda t: "--" if 3 <= len(t) <= 4 else t),
    _rule("\\.{3,5}", _const("...")),
    _rule("(?:\\.[ \u00a0]){2,4}\\.", _const("...")),
    _rule("[\u0085\u2026]", _const("...")),
    _rule(r"@+"),
    _rule(r"#+"),
    _rule(r"_+"),
    _rule(r"\*+"),
    _rule(r"[,;:]"),
    _rule(r"[?!]+"),
    _rule("[.\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa]"),
    _rule(r"[=/]"),
    _rule(rf"(?P<tok>{_HTHING}\.)[,;:]", _drop_soft_hyphens),
    _rule(_HTHING, _drop_soft_hyphens),
    _rule(rf"(?P<tok>{_THING}\.)[,;:]"),
    _rule(_THING),
    _rule(r"[A-Z]+(?:(?:[+&]|&(?i:amp);)[A-Z]+)+", lambda t: re.sub("&(?i:amp);", "&", t)),
    _rule(r"(?P<tok>')[A-Za-z][^ \t\n\r\u00a0]", _left_quote),
    _rule(_REDAUX, _right_quote),
    _rule(_APOS, _right_quote),
    _rule("''", _right_quote),
    _rule("[`\u2018-\u201f\u0091-\u0094\u2039\u203a\u00ab\u00bb]{1,2}", _right_quote),
    _rule(
        "[\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00ba\u00d7\u00f7\u2020-\u2023\u2032-\u2038"
        "\u2044\u2100-\u214f\u2190-\u21ff\u2200-\u22ff\u2300-\u23ff\u25a0-\u25ff\u2600-\u26ff\u2700-\u27bf"
        "\u2022\u00b7]"
    ),
)
_PLAIN_WORD = re.compile(r"[A-Za-z]+(?=[ \t\n])")
_WORD_THEN_STOP = re.compile(r"([A-Za-z]{2,})([.,;:!?])(?=[ \t\n]+[A-Za-z]|[ \t\n]*$)")
_ABBREVIATION = re.compile(rf"(?:{_ABBREV1}|{_CASED_ABBREV1}|{_ABBREV2}|{_NUMBER_ABBREVS})\.")
_ASSIMILATIONS = frozenset({"cannot", "gonna", "wanna", "gotta", "lemme", "gimme"})
_WHITESPACE = re.compile(f"(?:{_SPACENL}|[\u200b\u200e\u200f\ufeff\x00])+")


def _next_token(text: str, pos: int) -> tuple[str | None, int]:
    """Longest match at ``pos``: returns (token or None to drop, characters consumed)."""
    best: re.Match[str] | None = None
    best_rule: _Rule | None = None
    for rule in _RULES:
        m = rule.pattern.match(text, pos)
        if m is not None and m.end() > pos and (best is None or m.end() > best.end()):
            best, best_rule = m, rule
    if best is None or best_rule is None:
        # The lexer deletes characters it cannot tokenize (its "untokenizable=firstDelete").
        return None, 1
    consumed = best.group("tok") if "tok" in best.re.groupindex else best.group(0)
    return best_rule.emit(consumed), len(consumed)


# How much of the following captions a caption's tokenization may look at: the longest trailing
# context in the rules is an acronym followed by spaces and a sentence-starting word.
_FOLLOWING_CHARS = 32


def _fast_path(buf: str, pos: int) -> tuple[tuple[str, ...], int]:
    """Tokens for the two commonest shapes, with the result the rules would give (a test checks
    this against the rules alone), or ``()`` when the full rule set must decide.

    * ASCII letters followed by whitespace: a WORD; every longer rule needs punctuation.
    * Two or more ASCII letters, then one of ``.,;:!?``, then whitespace and a letter or the end:
      the word and the punctuation mark, unless the word with a period is an abbreviation.
    """
    m = _PLAIN_WORD.match(buf, pos)
    if m is not None:
        word = m.group(0).lower()
        return ((), pos) if word in _ASSIMILATIONS else ((word,), m.end())
    m = _WORD_THEN_STOP.match(buf, pos)
    if m is not None:
        word, stop = m.group(1), m.group(2)
        if word.lower() in _ASSIMILATIONS or (stop == "." and _ABBREVIATION.fullmatch(word + ".")):
            return (), pos
        return (word.lower(), stop), m.end()
    return (), pos


@lru_cache(maxsize=1 << 16)
def _scan(text: str, following: str, fast: bool = True) -> tuple[str, ...]:
    """PTB tokens of ``text``, where ``following`` is what the Java lexer sees after it.
    ``fast=False`` runs every token through the full rule set (for testing the fast path)."""
    tokens: list[str] = []
    end = len(text)
    buf = text + following
    pos = 0
    while pos < end:
        ws = _WHITESPACE.match(buf, pos)
        if ws is not None:
            pos = ws.end()
            continue
        if fast:
            fast_tokens, fast_end = _fast_path(buf, pos)
            if fast_tokens:
                tokens.extend(fast_tokens)
                pos = fast_end
                continue
        token, consumed = _next_token(buf, pos)
        if token:
            # Java's String.toLowerCase, as PTBTokenizer's -lowerCase applies it to each token.
            tokens.append(token.lower())
        pos += consumed
    return tuple(tokens)


def ptb_tokenize(text: str) -> list[str]:
    """Tokens of one caption as ``PTBTokenizer -preserveLines -lowerCase`` (CoreNLP 3.4.1) gives
    them, punctuation included, for a caption that is followed by an empty line."""
    return list(_scan(_one_line(text), "\n"))


def coco_tokenize(text: str) -> list[str]:
    """Tokens of one caption as pycocoevalcap scores it: PTB tokens minus ``COCO_PUNCTUATION``.

    This is exact when the caption is tokenized on its own; see :func:`coco_tokenize_corpus` for
    the (rare) case where the next caption in pycocoevalcap's batch changes the result.
    """
    return [tok for tok in _scan(_one_line(text), "\n") if tok not in COCO_PUNCTUATION]


def coco_tokenize_corpus(captions: Sequence[str]) -> list[list[str]]:
    """Tokens of each caption, reproducing one call of pycocoevalcap's ``PTBTokenizer.tokenize``.

    pycocoevalcap writes all captions of a call to one file, one per line, and the Java lexer reads
    that file as one stream, so the end of a caption can be tokenized differently depending on the
    next line: "... the letter b." followed by a caption starting "A man" loses the period of "b."
    (the lexer takes it as an acronym at a sentence end).  Passing the captions in the order
    pycocoevalcap would see them reproduces that; the last caption is followed by nothing.
    """
    lines = [_one_line(c) for c in captions]
    out: list[list[str]] = []
    for i, line in enumerate(lines):
        following = "\n" + "\n".join(lines[i + 1 : i + 3]) if i + 1 < len(lines) else ""
        tokens = _scan(line, following[:_FOLLOWING_CHARS])
        out.append([tok for tok in tokens if tok not in COCO_PUNCTUATION])
    return out


def _one_line(text: str) -> str:
    # pycocoevalcap replaces newlines inside a caption with spaces before writing it out.
    return text.replace("\n", " ")
