"""BERT WordPiece tokenizer with BLIP's two extra special tokens, on the `tokenizers` library.

BLIP (original ``models/blip.py: init_tokenizer``) takes ``bert-base-uncased`` and adds
``[DEC]`` as bos token (id 30522; first token of every decoder input) and ``[ENC]`` as an
additional special token (id 30523; first token of image-grounded encoder inputs), giving a
30524-row embedding table. Encoding is ``[CLS] wordpieces [SEP]`` with right padding by 0;
callers swap position 0 for ``dec_id``/``enc_id`` where the original does.

Decoding follows transformers 5.x ``BertTokenizer.decode``: the WordPiece decoder joins
``##`` pieces and glues ``.``, ``,``, ``?``, ``!`` to the previous word, but leaves
``dog ' s`` apart. transformers 4.x (which the original BLIP used) also applied string-level
``clean_up_tokenization_spaces`` by default (``dog's``); pass
``clean_up_tokenization_spaces=True`` for that.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tokenizers
import torch
from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

__all__ = ["Encoding", "Tokenizer"]

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
DEC, ENC = "[DEC]", "[ENC]"
_BERT_SPECIALS = (PAD, UNK, CLS, SEP, MASK)
# bert-base-uncased's WordPiece vocabulary, package data (Apache-2.0; see the NOTICE beside it).
DEFAULT_VOCAB = Path(__file__).resolve().parent / "assets" / "bert-base-uncased" / "vocab.txt"
_MODEL_MAX_LENGTH = 512  # bert-base-uncased position embeddings; written to tokenizer_config.json


class Encoding(NamedTuple):
    """A padded batch: ``ids`` and ``mask`` are int64 ``(B, L)``; mask is 1 on real tokens."""

    ids: torch.Tensor
    mask: torch.Tensor


class Tokenizer:
    """bert-base-uncased WordPiece + ``[DEC]``/``[ENC]``.

    Build with :meth:`from_path`, :meth:`from_vocab`, :meth:`from_tokenizer_json` or
    :meth:`default`. Instances are immutable; the backend never pads or truncates by itself.
    """

    def __init__(self, backend: tokenizers.Tokenizer, *, source: str = "<tokenizers.Tokenizer>") -> None:
        backend = tokenizers.Tokenizer.from_str(backend.to_str())  # private copy we may configure
        backend.no_padding()
        backend.no_truncation()
        self.source = source
        self.pad_id = _require_id(backend, PAD, source)
        self.unk_id = _require_id(backend, UNK, source)
        self.cls_id = _require_id(backend, CLS, source)
        self.sep_id = _require_id(backend, SEP, source)
        backend.add_special_tokens([_special(t) for t in _BERT_SPECIALS if backend.token_to_id(t) is not None])
        self.dec_id, self.enc_id = _append_dec_enc(backend, source)
        if backend.decoder is None:
            backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        # Only used by transformers when it loads our saved tokenizer.json; encode() adds
        # [CLS]/[SEP] itself so that any post-processor in a loaded file cannot change ids.
        backend.post_processor = processors.TemplateProcessing(
            single=f"{CLS}:0 $A:0 {SEP}:0",
            pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
            special_tokens=[(CLS, self.cls_id), (SEP, self.sep_id)],
        )
        self._backend = backend

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_vocab(cls, path: str | os.PathLike[str], *, lowercase: bool = True) -> Tokenizer:
        """From a BERT ``vocab.txt`` (one token per line, id = line number).

        ``lowercase=True`` is bert-base-uncased: lowercase and strip accents.
        """
        path = os.fspath(path)
        vocab = _read_vocab(path)
        unk = UNK if UNK in vocab else None
        if unk is None:
            raise ValueError(f"{path}: vocabulary has no {UNK} token")
        backend = tokenizers.Tokenizer(WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        return cls(backend, source=path)

    @classmethod
    def from_tokenizer_json(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """From a `tokenizers` ``tokenizer.json`` whose model is WordPiece with BERT specials."""
        path = os.fspath(path)
        try:
            backend = tokenizers.Tokenizer.from_file(path)
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise ValueError(f"{path}: not a readable tokenizer.json ({exc})") from exc
        model_type = json.loads(backend.to_str()).get("model", {}).get("type")
        if model_type != "WordPiece":
            raise ValueError(f"{path}: expected a WordPiece model, found {model_type!r}")
        return cls(backend, source=path)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """From a ``vocab.txt``, a ``tokenizer.json``, or a directory holding either.

        A directory's ``tokenizer.json`` wins over its ``vocab.txt`` (it carries the full
        normaliser); for a bare ``vocab.txt`` the directory's ``tokenizer_config.json``
        ``do_lower_case`` is honoured when present (default: lowercase).
        """
        p = Path(path)
        if p.is_dir():
            if (p / "tokenizer.json").is_file():
                return cls.from_tokenizer_json(p / "tokenizer.json")
            if (p / "vocab.txt").is_file():
                return cls.from_vocab(p / "vocab.txt", lowercase=_config_lowercase(p))
            raise FileNotFoundError(f"{p}: directory has neither tokenizer.json nor vocab.txt")
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such tokenizer file or directory")
        if p.suffix == ".json":
            return cls.from_tokenizer_json(p)
        return cls.from_vocab(p, lowercase=_config_lowercase(p.parent))

    @classmethod
    def default(cls) -> Tokenizer:
        """bert-base-uncased's vocab.txt, shipped inside openblip (openblip/assets/, with its
        license NOTICE): loading a Salesforce .pth or training needs no other package."""
        vocab = DEFAULT_VOCAB
        if not vocab.is_file():  # a broken install: the package data was left out
            raise FileNotFoundError(
                f"bert-base-uncased vocab.txt not found at {vocab} (reinstall openblip), "
                "or pass a vocab.txt / tokenizer.json path to Tokenizer.from_path"
            )
        return cls.from_vocab(vocab)

    # ------------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        """Number of ids including ``[DEC]``/``[ENC]`` (30524 for bert-base-uncased)."""
        return int(self._backend.get_vocab_size(with_added_tokens=True))

    def token_to_id(self, token: str) -> int | None:
        return self._backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._backend.id_to_token(token_id)

    # ------------------------------------------------------------------ encode / decode

    def encode(self, texts: Sequence[str], max_length: int | None = None, pad_to_max: bool = False) -> Encoding:
        """``[CLS] text [SEP]`` per text, right-padded with ``pad_id``.

        Pads to the longest sequence, or to ``max_length`` with ``pad_to_max=True``. With
        ``max_length`` the word pieces are truncated so that ``[SEP]`` stays last, as HF
        ``truncation=True`` does. ``max_length=None`` means no truncation.
        """
        if isinstance(texts, str):
            raise TypeError("encode expects a sequence of strings; wrap a single text in a list")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be >= 2 to hold [CLS] and [SEP], got {max_length}")
        if pad_to_max and max_length is None:
            raise ValueError("pad_to_max=True needs max_length")
        pieces = self._backend.encode_batch(list(texts), add_special_tokens=False) if texts else []
        keep = None if max_length is None else max_length - 2
        rows = [[self.cls_id, *piece.ids[:keep], self.sep_id] for piece in pieces]
        width = max_length if pad_to_max and max_length is not None else max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)  # (B, L)
        mask = np.zeros((len(rows), width), dtype=np.int64)  # (B, L)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return Encoding(torch.from_numpy(ids), torch.from_numpy(mask))

    def decode(
        self,
        ids: Sequence[int] | torch.Tensor,
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool = False,
    ) -> str:
        """Ids -> text, as transformers 5.x ``BertTokenizer.decode`` (see module docstring)."""
        id_list = self._check_ids(ids)
        text: str = self._backend.decode(id_list, skip_special_tokens=skip_special_tokens)
        return _clean_up_spaces(text) if clean_up_tokenization_spaces else text

    def batch_decode(
        self,
        ids: Sequence[Sequence[int]] | torch.Tensor,
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool = False,
    ) -> list[str]:
        """:meth:`decode` for each row of a ``(B, L)`` tensor or a list of id lists."""
        if isinstance(ids, torch.Tensor) and ids.dim() != 2:
            raise ValueError(f"batch_decode expects a (B, L) tensor, got shape {tuple(ids.shape)}")
        return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in ids]

    def _check_ids(self, ids: Sequence[int] | torch.Tensor) -> list[int]:
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode expects a 1-D tensor, got shape {tuple(ids.shape)}")
            id_list = [int(i) for i in ids.tolist()]
        else:
            id_list = [int(i) for i in ids]
        size = self.vocab_size
        for position, token_id in enumerate(id_list):
            if not 0 <= token_id < size:
                raise ValueError(f"id {token_id} at position {position} is outside the vocabulary [0, {size})")
        return id_list

    # ------------------------------------------------------------------ save

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``vocab.txt``, ``tokenizer.json`` and ``tokenizer_config.json``.

        transformers' ``BertTokenizer.from_pretrained(directory)`` reads the result with
        ``[DEC]`` as bos token and ``[ENC]`` as additional special token.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        vocab = self._backend.get_vocab(with_added_tokens=False)
        ordered = sorted(vocab.items(), key=lambda item: item[1])
        if [i for _, i in ordered] != list(range(len(ordered))):
            raise ValueError(f"{self.source}: WordPiece ids are not contiguous; cannot write vocab.txt")
        (out / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in ordered), encoding="utf-8")
        self._backend.save(str(out / "tokenizer.json"))
        config: dict[str, object] = {
            "tokenizer_class": "BertTokenizer",
            "unk_token": UNK,
            "sep_token": SEP,
            "pad_token": PAD,
            "cls_token": CLS,
            "mask_token": MASK,
            "bos_token": DEC,
            "additional_special_tokens": [ENC],
            "model_max_length": _MODEL_MAX_LENGTH,
            "clean_up_tokenization_spaces": False,
        }
        lowercase = _backend_lowercase(self._backend)
        if lowercase is not None:
            config["do_lower_case"] = lowercase
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def __repr__(self) -> str:
        return f"Tokenizer(source={self.source!r}, vocab_size={self.vocab_size})"


def _special(token: str) -> AddedToken:
    return AddedToken(token, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False)


def _require_id(backend: tokenizers.Tokenizer, token: str, source: str) -> int:
    token_id = backend.token_to_id(token)
    if token_id is None:
        raise ValueError(f"{source}: vocabulary has no {token} token")
    return int(token_id)


def _append_dec_enc(backend: tokenizers.Tokenizer, source: str) -> tuple[int, int]:
    """Put ``[DEC]`` and ``[ENC]`` at the two ids after the rest of the vocabulary.

    A source that already holds them (e.g. a saved BLIP tokenizer) must hold them exactly
    there; anywhere else would silently shift the embedding rows, so it is an error.
    """
    present = {token: backend.token_to_id(token) for token in (DEC, ENC)}
    base = backend.get_vocab_size(with_added_tokens=True) - sum(v is not None for v in present.values())
    for offset, token in enumerate((DEC, ENC)):
        found = present[token]
        if found is not None and found != base + offset:
            raise ValueError(f"{source}: {token} has id {found}, expected {base + offset} (after the vocabulary)")
    backend.add_special_tokens([_special(DEC), _special(ENC)])
    dec_id, enc_id = backend.token_to_id(DEC), backend.token_to_id(ENC)
    if (dec_id, enc_id) != (base, base + 1):  # defensive: tokenizers appends in order
        raise ValueError(f"{source}: [DEC]/[ENC] got ids {dec_id}/{enc_id}, expected {base}/{base + 1}")
    return base, base + 1


def _read_vocab(path: str) -> dict[str, int]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read vocabulary ({exc})") from exc
    vocab: dict[str, int] = {}
    for index, line in enumerate(lines):
        token = line.rstrip("\n")
        if token in vocab:
            raise ValueError(f"{path}:{index + 1}: duplicate token {token!r} (first on line {vocab[token] + 1})")
        vocab[token] = index
    if not vocab:
        raise ValueError(f"{path}: empty vocabulary")
    return vocab


def _config_lowercase(directory: Path) -> bool:
    config = directory / "tokenizer_config.json"
    if config.is_file():
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("do_lower_case", True)
        except (OSError, ValueError, AttributeError) as exc:
            raise ValueError(f"{config}: unreadable tokenizer config ({exc})") from exc
        return bool(value)
    return True


def _backend_lowercase(backend: tokenizers.Tokenizer) -> bool | None:
    normalizer = json.loads(backend.to_str()).get("normalizer") or {}
    if normalizer.get("type") == "BertNormalizer":
        return bool(normalizer.get("lowercase"))
    return None


# transformers' PreTrainedTokenizerBase.clean_up_tokenization (the 4.x default for BERT).
_CLEANUPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def _clean_up_spaces(text: str) -> str:
    for old, new in _CLEANUPS:
        text = text.replace(old, new)
    return text
