"""The task endpoints: /v1/caption, /v1/vqa, /v1/match, /v1/embed, /v1/classify, /v1/search,
/v1/explain.

Each validates its body and images, checks that the loaded models can do the task and that the
settings are usable (422 naming the field otherwise, before anything is queued, so that one bad
request never fails a batch it would have shared), queues one item per image (or query text),
and answers with the CLI's fields plus `itm_score` where a scorer scored the output.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from openblip.model.generate import GenerationConfig
from openblip.serve.engine import (
    CaptionItem,
    CaptionKey,
    ClassifyKey,
    EmbedImagesKey,
    EmbedTextsKey,
    ExplainKey,
    Generated,
    MatchKey,
    SearchImagesKey,
    SearchTextsKey,
    VqaItem,
    VqaKey,
    hit_record,
)
from openblip.serve.errors import ApiError
from openblip.serve.schemas import (
    CaptionRequest,
    ClassifyRequest,
    EmbedRequest,
    ExplainRequest,
    MatchRequest,
    SearchRequest,
    VqaRequest,
)
from openblip.serve.state import ServerState
from openblip.tasks.caption import caption_config, prompt_ids
from openblip.tasks.classify import check_label
from openblip.tasks.explain import Explanation, check_layer
from openblip.tasks.heatmap import data_url, png, render
from openblip.tasks.index import IndexKind
from openblip.tasks.inputs import check_text, require_caption_decoder, require_vqa
from openblip.tasks.retrieval import SearchOptions
from openblip.tasks.vqa import check_answer_length, clean_question


def body_spec(name: str) -> dict[str, Any]:
    """openapi_extra of an endpoint whose body is the model `name` (JSON) or a multipart form."""
    ref = {"$ref": f"#/components/schemas/{name}"}
    form = {
        "type": "object",
        "properties": {"images": {"type": "array", "items": {"type": "string", "format": "binary"}}},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref}, "multipart/form-data": {"schema": form}},
        }
    }


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def _capable(check: Any, state: ServerState) -> None:
    try:
        check(state.engine.model.model)
    except ValueError as e:
        raise ApiError(400, f"model {state.config.model_id}: {e}") from e


def _matcher(state: ServerState, task: str) -> None:
    if state.engine.matcher is None:
        raise ApiError(
            400, f"{task} needs ITC/ITM heads: model {state.config.model_id} has none and no --scorer was given"
        )


def _unprocessable(e: ValueError) -> ApiError:
    return ApiError(422, str(e))


def caption_settings(state: ServerState, req: CaptionRequest) -> CaptionKey:
    model = state.engine.model
    if req.min_length > req.max_length:
        raise ApiError(422, f"min_length {req.min_length} is greater than max_length {req.max_length}")
    if req.max_length > model.model.cfg.text.max_positions:
        raise ApiError(
            422, f"max_length {req.max_length} exceeds the model's {model.model.cfg.text.max_positions} positions"
        )
    plen = prompt_ids(model.tokenizer, req.prompt).numel()
    if plen >= req.max_length:
        raise ApiError(
            422,
            f"the prompt takes {plen} tokens ([DEC] included): max_length {req.max_length} leaves nothing to generate",
        )
    try:
        cfg = caption_config(
            sample=req.sample,
            num_beams=req.num_beams,
            max_length=req.max_length,
            min_length=req.min_length,
            top_p=req.top_p,
            top_k=req.top_k,
            temperature=req.temperature,
            repetition_penalty=req.repetition_penalty,
            num_captions=req.num_captions,
            seed=req.seed,
        )
    except ValueError as e:
        raise _unprocessable(e) from e
    return CaptionKey(cfg, req.prompt)


def _outputs(res: Generated) -> list[dict[str, Any]]:
    return [{"text": o.text, "score": o.score, "itm_score": o.itm} for o in res.outputs]


router = APIRouter()


@router.post("/v1/caption", openapi_extra=body_spec("CaptionRequest"), summary="caption images")
async def caption(request: Request) -> dict[str, Any]:
    state = _state(request)
    req, uploads = await state.parse(request, CaptionRequest)
    _capable(require_caption_decoder, state)
    key = caption_settings(state, req)
    images = await state.images(req.images, uploads)
    results: list[Generated] = await state.submit(key, [CaptionItem(im.image, i) for i, im in enumerate(images)])
    await state.record("caption", images, results, req.model_dump(exclude={"images"}))
    return {
        "model": state.config.model_id,
        "results": [
            {"index": i, "caption": r.outputs[0].text, "itm_score": r.outputs[0].itm, "captions": _outputs(r)}
            for i, r in enumerate(results)
        ],
    }


@router.post("/v1/vqa", openapi_extra=body_spec("VqaRequest"), summary="answer a question about images")
async def vqa(request: Request) -> dict[str, Any]:
    state = _state(request)
    req, uploads = await state.parse(request, VqaRequest)
    _capable(require_vqa, state)
    try:
        clean_question(req.question)
        cfg = GenerationConfig(
            max_length=req.max_length, min_length=min(req.min_length, req.max_length), num_beams=req.num_beams
        )
        check_answer_length(state.engine.model.model, cfg)
        for i, a in enumerate(req.answers or []):
            if not a.strip():
                raise ValueError(f"answers[{i}] is empty")
    except ValueError as e:
        raise _unprocessable(e) from e
    key = VqaKey(cfg, None if req.answers is None else tuple(req.answers))
    images = await state.images(req.images, uploads)
    results: list[Generated] = await state.submit(key, [VqaItem(im.image, req.question) for im in images])
    await state.record("answer", images, results, req.model_dump(exclude={"images"}))
    return {
        "model": state.config.model_id,
        "results": [
            {
                "index": i,
                "question": req.question,
                "answer": r.outputs[0].text,
                "score": r.outputs[0].score,
                "itm_score": r.outputs[0].itm,
            }
            for i, r in enumerate(results)
        ],
    }


def _check_texts(texts: list[str], what: str) -> None:
    try:
        for i, t in enumerate(texts):
            check_text(t, i)
    except ValueError as e:
        raise ApiError(422, f"{what}: {e}") from e


@router.post("/v1/match", openapi_extra=body_spec("MatchRequest"), summary="ITM and ITC scores of image-text pairs")
async def match(request: Request) -> dict[str, Any]:
    state = _state(request)
    req, uploads = await state.parse(request, MatchRequest)
    _matcher(state, "matching")
    state.check_count("texts", len(req.texts))
    _check_texts(req.texts, "texts")
    images = await state.images(req.images, uploads)
    results = await state.submit(MatchKey(tuple(req.texts)), [im.image for im in images])
    return {
        "model": state.config.model_id,
        "results": [
            {"image": i, "text": t, "itm_score": itm, "itc_score": itc}
            for i, pairs in enumerate(results)
            for t, (itm, itc) in zip(req.texts, pairs)
        ],
    }


@router.post("/v1/embed", openapi_extra=body_spec("EmbedRequest"), summary="ITC features of images and texts")
async def embed(request: Request) -> dict[str, Any]:
    state = _state(request)
    req, uploads = await state.parse(request, EmbedRequest)
    _matcher(state, "embedding")
    if not req.images and not req.texts:
        raise ApiError(422, "give images, texts or both")
    out: dict[str, Any] = {"model": state.config.model_id, "image_embeddings": None, "text_embeddings": None}
    if req.texts:
        state.check_count("texts", len(req.texts))
        _check_texts(req.texts, "texts")
    if req.images:
        images = await state.images(req.images, uploads)
        out["image_embeddings"] = [
            e.tolist() for e in await state.submit(EmbedImagesKey(), [im.image for im in images])
        ]
    if req.texts:
        out["text_embeddings"] = [e.tolist() for e in await state.submit(EmbedTextsKey(), list(req.texts))]
    out["dim"] = state.engine.matcher.model.cfg.embed_dim if state.engine.matcher is not None else None
    return out


@router.post("/v1/classify", openapi_extra=body_spec("ClassifyRequest"), summary="zero-shot classification")
async def classify(request: Request) -> dict[str, Any]:
    state = _state(request)
    req, uploads = await state.parse(request, ClassifyRequest)
    _matcher(state, "classification")
    state.check_count("labels", len(req.labels))
    try:
        for i, label in enumerate(req.labels):
            check_label(label, i)
        if "{}" not in req.template:
            raise ValueError(f"template {req.template!r} has no {{}} for the label")
    except ValueError as e:
        raise _unprocessable(e) from e
    images = await state.images(req.images, uploads)
    key = ClassifyKey(tuple(req.labels), req.template, req.top_k, req.rerank)
    results = await state.submit(key, [im.image for im in images])
    return {
        "model": state.config.model_id,
        "results": [
            {
                "index": i,
                "label": r[0].label,
                "labels": [
                    {"label": s.label, "probability": s.probability, "itc_score": s.itc, "itm_score": s.itm} for s in r
                ],
            }
            for i, r in enumerate(results)
        ],
    }


@router.post("/v1/search", openapi_extra=body_spec("SearchRequest"), summary="search the loaded index")
async def search(request: Request) -> dict[str, Any]:
    state = _state(request)
    req, uploads = await state.parse(request, SearchRequest)
    index = state.engine.index
    if index is None:
        raise ApiError(404, "no index is loaded: start the server with --index DIR to search")
    if (req.texts is None) == (req.images is None):
        raise ApiError(422, "give either texts (to find images) or images (to find texts)")
    options = SearchOptions(req.k, req.rerank)
    if req.texts is not None:
        if index.kind is not IndexKind.IMAGES:
            raise ApiError(400, f"texts search an index of images; the loaded index holds {index.kind.value}")
        state.check_count("texts", len(req.texts))
        _check_texts(req.texts, "texts")
        found = await state.submit(SearchImagesKey(options), list(req.texts))
        queries: list[Any] = list(req.texts)
    else:
        assert req.images is not None
        if index.kind is not IndexKind.TEXTS:
            raise ApiError(400, f"images search an index of texts; the loaded index holds {index.kind.value}")
        images = await state.images(req.images, uploads)
        found = await state.submit(SearchTextsKey(options), [im.image for im in images])
        queries = list(range(len(images)))
    return {
        "model": state.config.model_id,
        "results": [
            {"query": q, "hits": [hit_record(r, h) for r, h in enumerate(hits, 1)]} for q, hits in zip(queries, found)
        ],
    }


def _explained(image: Any, e: Explanation) -> dict[str, Any]:
    """The CLI's record of one pair (cli/explain_cmd.py) with its two pictures as data URLs."""
    pictures = render(image, e)
    return {
        "itm_score": e.itm_score,
        "layer": e.layer,
        "words": [{"word": w.word, "peak": None if w.peak is None else list(w.peak), "mass": w.mass} for w in e.words],
        "heatmap": data_url(png(pictures.whole)),
        "word_heatmaps": data_url(png(pictures.words)),
    }


@router.post(
    "/v1/explain", openapi_extra=body_spec("ExplainRequest"), summary="where each word of a text is in the images"
)
async def explain(request: Request) -> dict[str, Any]:
    """ITM Grad-CAM (tasks/explain.py) of the text with each image, by the model that scores
    matches (the served one with ITM heads, else the scorer). Images sharing a text and layer
    batch together on the model thread; the pictures are drawn off it."""
    state = _state(request)
    req, uploads = await state.parse(request, ExplainRequest)
    _matcher(state, "explaining")
    matcher = state.engine.matcher
    assert matcher is not None
    _check_texts([req.text], "text")
    try:
        layer = check_layer(matcher.model, req.layer)
    except ValueError as e:
        raise _unprocessable(e) from e
    images = await state.images(req.images, uploads)
    results: list[Explanation] = await state.submit(ExplainKey(req.text, layer), [im.image for im in images])
    return {
        "model": state.config.model_id,
        "explained_by": matcher.source.source,
        "text": req.text,
        "results": [
            {"index": i, **await run_in_threadpool(_explained, im.image, e)}
            for i, (im, e) in enumerate(zip(images, results))
        ],
    }
