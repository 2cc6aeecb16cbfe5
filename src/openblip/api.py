"""The Python API: `openblip.load(source)` -> a BlipPipeline with one method per task.

    >>> import openblip
    >>> blip = openblip.load("Salesforce/blip-image-captioning-base")
    >>> blip.caption(["photo.jpg"])[0].caption
    'a woman sitting on the beach with her dog'

Images may be paths, encoded bytes or PIL images (one, or a list); caption, answer, match and
classify return a list of small result dataclasses in input order, embed_images / embed_texts
an (N, E) tensor, the searches a list of hits per query. An image that cannot be used raises ImageError
naming it (the CLI turns such failures into per-item error records instead). Work runs in
batches of `batch_size` images; the ViT sees each image once and the decoder's cross-attention
keys/values are computed once per image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image

from openblip.api_inputs import ImageInput, as_images, as_texts, image_name
from openblip.checkpoint_io import LoadedModel, SourceInfo, load_model
from openblip.device import resolve_device, resolve_dtype
from openblip.image import DEFAULT_MAX_PIXELS, load_image, preprocess
from openblip.model.blip import Blip
from openblip.model.generate import BeamRules, GenerationConfig
from openblip.results import AnswerResult, CaptionResult, ClassifyResult, ExplainResult, MatchResult
from openblip.tasks.caption import DEFAULT_PROMPT, caption_config, caption_images
from openblip.tasks.classify import DEFAULT_TEMPLATE, classify_images, prepare_labels
from openblip.tasks.explain import check_request, explain_loaded
from openblip.tasks.index import EmbeddingIndex, IndexEntry, IndexKind, ModelIdentity, model_fingerprint
from openblip.tasks.inputs import check_text, embed_images, embed_texts
from openblip.tasks.match import match_images_texts
from openblip.tasks.retrieval import Hit, SearchOptions, search_images, search_texts
from openblip.tasks.vqa import RANK_K, answer_questions, clean_question, rank_answers
from openblip.tokenizer import Tokenizer

log = logging.getLogger(__name__)


class BlipPipeline:
    """A loaded BLIP checkpoint with its tokenizer, ready for every task the checkpoint supports.

    Build it with `openblip.load`. `model` and `tokenizer` are public for lower-level use with
    openblip.tasks.
    """

    def __init__(self, loaded: LoadedModel, *, image_size: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.model: Blip = loaded.model.eval()
        self.tokenizer: Tokenizer = loaded.tokenizer
        self.source: SourceInfo = loaded.source
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        self.image_size = image_size or loaded.config.vision.image_size
        self.max_pixels = max_pixels

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def __repr__(self) -> str:
        return (
            f"BlipPipeline(source={self.source.source!r}, device={self.device}, dtype={self.dtype}, "
            f"cpu_kernels={str(self.model.cpu_kernels)!r})"
        )

    # ---- images ------------------------------------------------------------------------------------
    def load_image(self, source: ImageInput, name: str | None = None) -> Image.Image:
        """Open and validate one image (ImageError naming it when it cannot be used)."""
        return load_image(source, max_pixels=self.max_pixels, name=name)

    def pixels(self, images: Sequence[ImageInput], first: int = 0) -> torch.Tensor:
        """Load and preprocess: (B, 3, S, S) float32 at the model's input size. An ImageError
        names the image by path, or as "<bytes #i>" / "<image #i>" counting from `first`."""
        return self.preprocess([self.load_image(im, image_name(im, first + i)) for i, im in enumerate(images)])

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Already loaded RGB images (load_image) -> (B, 3, S, S) float32."""
        return preprocess(images, self.image_size)

    def _batches(self, items: Sequence[ImageInput], batch_size: int) -> Iterator[tuple[range, torch.Tensor]]:
        """(positions in `items`, their pixels (b, 3, S, S)) per batch of `batch_size`, in order;
        each batch is loaded only when reached."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for lo in range(0, len(items), batch_size):
            chunk = range(lo, min(len(items), lo + batch_size))
            yield chunk, self.pixels([items[i] for i in chunk], lo)

    # ---- tasks -------------------------------------------------------------------------------------
    def caption(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        prompt: str = DEFAULT_PROMPT,
        num_beams: int = 3,
        max_length: int = 20,
        min_length: int = 5,
        sample: bool = False,
        top_p: float = 0.9,
        top_k: int = 50,
        temperature: float = 1.0,
        repetition_penalty: float | None = None,
        length_penalty: float = 1.0,
        no_repeat_ngram_size: int = 0,
        num_captions: int = 1,
        seed: int | None = None,
        batch_size: int = 16,
        beam_rules: BeamRules = BeamRules.ORIGINAL,
    ) -> list[CaptionResult]:
        """Captions per image (see `caption_config` for the decoding settings; beam_rules: beam
        search as the original, transformers 4.15, or as today's transformers). The prompt
        ("a picture of " by default, "" for none) is removed from the returned text as the original
        does (its len(prompt) characters cut from the decoded sequence). Each caption carries its
        words' probabilities and its mean token log-prob (Caption.words, .mean_logprob). With
        sampling and a seed, each image's captions depend only on the seed and the image's
        position in `images`, not on batch_size nor on the other images."""
        cfg = caption_config(
            sample=sample,
            num_beams=num_beams,
            max_length=max_length,
            min_length=min_length,
            top_p=top_p,
            top_k=top_k,
            temperature=temperature,
            repetition_penalty=repetition_penalty,
            length_penalty=length_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
            num_captions=num_captions,
            seed=seed,
            beam_rules=beam_rules,
        )
        items = as_images(images)
        out: list[CaptionResult] = []
        for chunk, pixels in self._batches(items, batch_size):
            caps = caption_images(self.model, self.tokenizer, pixels, cfg, prompt, sample_keys=chunk)
            out += [CaptionResult(image_name(items[i], i), tuple(c)) for i, c in zip(chunk, caps)]
        return out

    def answer(
        self,
        images: ImageInput | Sequence[ImageInput],
        question: str | Sequence[str],
        *,
        candidates: Sequence[str] | None = None,
        rank_k: int = RANK_K,
        num_beams: int = 3,
        max_length: int = 10,
        min_length: int = 1,
        batch_size: int = 16,
        beam_rules: BeamRules = BeamRules.ORIGINAL,
    ) -> list[AnswerResult]:
        """Answer one question about every image, or one question per image.

        Without candidates the answer is generated (the original: beam 3, max_length 10,
        min_length 1, [DEC] counted, transformers 4.15's beam rules unless beam_rules says
        BeamRules.TRANSFORMERS). With candidates the best of them is chosen as the
        original's rank mode (top rank_k by first-token probability, then full likelihood).
        An empty question (nothing left after cleaning) raises ValueError naming it, before any
        image is read."""
        items = as_images(images)
        questions = [question] * len(items) if isinstance(question, str) else as_texts(question, "question")
        if len(questions) != len(items):
            raise ValueError(f"{len(questions)} questions for {len(items)} images")
        for i, q in enumerate(questions):
            clean_question(q, i)
        if isinstance(candidates, str):
            raise TypeError("candidates must be a sequence of answers, not one str")
        cfg = GenerationConfig(max_length=max_length, min_length=min_length, num_beams=num_beams, beam_rules=beam_rules)
        out: list[AnswerResult] = []
        for chunk, pixels in self._batches(items, batch_size):
            qs = [questions[i] for i in chunk]
            if candidates is None:
                answers = answer_questions(self.model, self.tokenizer, pixels, qs, cfg)
            else:
                answers = rank_answers(self.model, self.tokenizer, pixels, qs, candidates, rank_k)
            out += [
                AnswerResult(image_name(items[i], i), questions[i], a.text, a.score) for i, a in zip(chunk, answers)
            ]
        return out

    def match(
        self,
        images: ImageInput | Sequence[ImageInput],
        texts: str | Sequence[str],
        *,
        batch_size: int = 16,
    ) -> list[MatchResult]:
        """ITM probability and ITC cosine of every (image, text) pair, image-major. Texts are
        cleaned as the original retrieval (pre_caption, 30 words) and cut to 35 tokens; a text
        with nothing left ("", "!!!") raises ValueError naming it, before any image is read."""
        items = as_images(images)
        text_list = as_texts(texts)
        if not text_list:
            raise ValueError("no texts to match")
        for i, t in enumerate(text_list):
            check_text(t, i)
        out: list[MatchResult] = []
        for chunk, pixels in self._batches(items, batch_size):
            s = match_images_texts(self.model, self.tokenizer, pixels, text_list)
            for b, i in enumerate(chunk):
                out += [
                    MatchResult(image_name(items[i], i), t, float(s.itm[b, j]), float(s.itc[b, j]))
                    for j, t in enumerate(text_list)
                ]
        return out

    def explain(
        self, images: ImageInput | Sequence[ImageInput], texts: str | Sequence[str], *, layer: int | None = None
    ) -> list[ExplainResult]:
        """ITM Grad-CAM of every (image, text) pair, image-major (tasks/explain.py); layer 0-based."""
        items, text_list = as_images(images), as_texts(texts)
        check_request(self.model, text_list, layer)  # before any image is read
        names = [image_name(item, i) for i, item in enumerate(items)]
        loaded = (self.load_image(item, name) for item, name in zip(items, names))  # one at a time
        rows = (explain_loaded(self.model, self.tokenizer, [im], text_list, layer=layer)[0] for im in loaded)
        return [ExplainResult(image=name, **vars(e)) for name, row in zip(names, rows) for e in row]

    def embed_images(self, images: ImageInput | Sequence[ImageInput], *, batch_size: int = 32) -> torch.Tensor:
        """ITC image features (N, E), L2-normalised, float32 on the CPU."""
        items = as_images(images)
        parts = [embed_images(self.model, pixels, batch_size) for _, pixels in self._batches(items, batch_size)]
        return torch.cat(parts) if parts else torch.zeros(0, self.model.cfg.embed_dim)

    def embed_texts(self, texts: str | Sequence[str], *, clean: bool = True, batch_size: int = 256) -> torch.Tensor:
        """ITC text features (T, E), L2-normalised, float32 on the CPU (pre_caption first unless
        clean=False). A text with nothing left ("", "!!!" when cleaned) raises ValueError naming it."""
        text_list = as_texts(texts)
        for i, t in enumerate(text_list):
            check_text(t, i, clean)
        return embed_texts(self.model, self.tokenizer, text_list, clean=clean, batch_size=batch_size)

    def classify(
        self,
        images: ImageInput | Sequence[ImageInput],
        labels: Iterable[str],
        *,
        template: str = DEFAULT_TEMPLATE,
        top_k: int = 5,
        rerank: int = 0,
        batch_size: int = 16,
    ) -> list[ClassifyResult]:
        """Zero-shot classification: the top_k labels per image with probabilities (softmax of
        ITC cosine / the model's temperature; with rerank > 0, of ITM logit + cosine over the
        best `rerank` labels). A repeated label counts once."""
        if isinstance(labels, str):
            raise TypeError("labels must be a sequence of labels, not one str")
        items = as_images(images)
        label_set = prepare_labels(self.model, self.tokenizer, labels, template)
        out: list[ClassifyResult] = []
        for chunk, pixels in self._batches(items, batch_size):
            res = classify_images(self.model, self.tokenizer, pixels, label_set, top_k=top_k, rerank=rerank)
            out += [ClassifyResult(image_name(items[i], i), tuple(r)) for i, r in zip(chunk, res)]
        return out

    # ---- retrieval ---------------------------------------------------------------------------------
    def identity(self, tokenizer: str | None = None) -> ModelIdentity:
        """What an index records about the model that built it."""
        src = self.source.source
        if Path(src).expanduser().exists():
            src = str(Path(src).expanduser().resolve())
        return ModelIdentity(src, model_fingerprint(self.model), self.image_size, tokenizer)

    def open_index(
        self, directory: str | os.PathLike[str], kind: IndexKind | str | None = None, *, tokenizer: str | None = None
    ) -> EmbeddingIndex:
        """Open the index at `directory` (refused when built by another model), or create one
        of `kind` ("images" or "texts") there when none exists."""
        kind = None if kind is None else IndexKind(kind)
        if EmbeddingIndex.exists(directory):
            index = EmbeddingIndex.open(directory)
            index.check_model(model_fingerprint(self.model))
            if kind is not None and index.kind is not kind:
                raise ValueError(f"{directory}: an index of {index.kind.value}, not {kind.value}")
            return index
        if kind is None:
            raise FileNotFoundError(f"{directory}: no index there")
        return EmbeddingIndex.create(directory, kind, self.identity(tokenizer), self.model.cfg.embed_dim)

    def index_images(
        self,
        index: EmbeddingIndex,
        paths: Sequence[str | os.PathLike[str]],
        images: Sequence[Image.Image] | None = None,
        *,
        batch_size: int = 32,
    ) -> list[int]:
        """Add image files to an image index, keyed by absolute path (re-ranking reads them
        again from there); `images` may hold them already loaded. Returns each file's row (the
        existing row for a file indexed before)."""
        if isinstance(paths, str | os.PathLike):
            raise TypeError("paths must be a sequence of image paths, not one path")
        if images is not None and len(images) != len(paths):
            raise ValueError(f"{len(images)} loaded images for {len(paths)} paths")
        entries = [IndexEntry(p, path=p) for p in (str(Path(x).expanduser().resolve()) for x in paths)]
        new = [i for i, e in enumerate(entries) if index.row_of(e.key) is None]
        sources: list[ImageInput] = [images[i] if images is not None else paths[i] for i in new]
        index.add([entries[i] for i in new], self.embed_images(sources, batch_size=batch_size))
        rows = [index.row_of(e.key) for e in entries]
        return [r for r in rows if r is not None]

    def index_texts(self, index: EmbeddingIndex, texts: Sequence[str], *, batch_size: int = 256) -> list[int]:
        """Add texts (key = the text) to a text index: their rows (existing rows for repeats). A
        text with nothing left after the index's cleaning raises ValueError naming it."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one str")
        for i, t in enumerate(texts):
            check_text(t, i, index.clean_texts)
        entries = [IndexEntry(t, text=t) for t in texts]
        embeds = self.embed_texts(list(texts), clean=index.clean_texts, batch_size=batch_size)
        index.add(entries, embeds)
        rows = [index.row_of(t) for t in texts]
        return [r for r in rows if r is not None]

    def search_images(
        self, index: EmbeddingIndex, texts: str | Sequence[str], options: SearchOptions
    ) -> list[list[Hit]]:
        """Images of an image index for each text: ITC top-k, ITM re-ranking of the best `options.rerank`."""
        text_list = as_texts(texts)
        index.check_model(model_fingerprint(self.model))
        return search_images(self.model, self.tokenizer, index, text_list, self._pixels_of_path, options)

    def search_texts(
        self, index: EmbeddingIndex, images: ImageInput | Sequence[ImageInput], options: SearchOptions
    ) -> list[list[Hit]]:
        """Texts of a text index for each image."""
        items = as_images(images)
        index.check_model(model_fingerprint(self.model))
        return search_texts(self.model, self.tokenizer, index, self.pixels(items), options)

    def _pixels_of_path(self, path: str) -> torch.Tensor:
        return preprocess([self.load_image(path)], self.image_size)[0]


def load(
    source: str | os.PathLike[str],
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype | None = None,
    image_size: int | None = None,
    tokenizer: str | os.PathLike[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cpu_kernels: str | None = None,
) -> BlipPipeline:
    """Load a BLIP checkpoint for inference.

    source: a transformers directory, a Salesforce .pth, an openblip directory, a hub id
    (owner/name) or an http(s) URL. device: "auto" (cuda, then mps, then cpu), or a torch
    device string. dtype: "fp32" (default), "bf16" or "fp16" (fp16 on the CPU falls back to
    fp32 with a warning). image_size: input size to run at (position embeddings resized);
    default the checkpoint's. tokenizer: a vocab.txt / tokenizer.json / directory overriding
    the checkpoint's. max_pixels: images with more pixels are refused (decompression bombs).
    cpu_kernels: "auto" (default: what was measured fastest on this kind of CPU), "on" (our CPU
    kernels, an error saying why where they cannot run) or "off" (torch's ops); None reads
    $OPENBLIP_CPU_KERNEL. The choice is shown in the pipeline's repr (Blip.use_cpu_kernels).
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    tok = None if tokenizer is None else Path(tokenizer)
    src = source if isinstance(source, str) else Path(source)
    loaded = load_model(src, tokenizer=tok, image_size=image_size, device=dev, dtype=dt, cpu_kernels=cpu_kernels)
    return BlipPipeline(loaded, image_size=image_size, max_pixels=max_pixels)
