"""OpenAI-compatible `POST /v1/chat/completions` and `GET /v1/models`.

The last user message carries one image as an `image_url` part (a data URL; an http(s) URL
only with --allow-remote-images) and optionally text. No text: the image is captioned (needs
a captioning checkpoint). Text: it is a question and the answer comes back (needs a VQA
checkpoint). Earlier messages and system prompts are accepted and ignored: BLIP has no chat
memory. The reply is in `choices[i].message.content`; each choice also carries `itm_score`
when the server has a scorer.

Settings: temperature 0 or omitted = beam search with the original's settings (deterministic);
temperature > 0 = nucleus sampling at that temperature with `top_p` (default 0.9, the
original's); `n` completions (beams or samples); `seed` makes sampling repeatable;
`max_tokens` caps the generated tokens, the closing [SEP] included (so the text has at most
that many word pieces; finish_reason "length" when the cap cut it). Streaming is not offered
(BLIP's outputs are a few words).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request

from openblip.model.generate import GenerationConfig
from openblip.serve.engine import CaptionItem, CaptionKey, Generated, VqaItem, VqaKey
from openblip.serve.errors import ApiError
from openblip.serve.routes import body_spec
from openblip.serve.schemas import ChatRequest, ImagePart, TextPart
from openblip.serve.state import ServerState
from openblip.tasks.caption import BEAM_DEFAULTS, DEFAULT_PROMPT, caption_config, prompt_ids
from openblip.tasks.vqa import VQA_GENERATION, clean_question

router = APIRouter()


def capabilities(state: ServerState) -> dict[str, bool]:
    cfg = state.engine.model.model.cfg
    return {
        "caption": state.engine.model.model.text_decoder is not None and not cfg.decoder_over_text,
        "vqa": cfg.decoder_over_text,
        "match": state.engine.matcher is not None,
        "explain": state.engine.matcher is not None,  # ITM Grad-CAM by the model that scores matches
        "search": state.engine.index is not None,
        "scored": state.engine.scorer is not None,
    }


@router.get("/v1/models", summary="the served model (OpenAI format)")
async def models(request: Request) -> dict[str, Any]:
    state: ServerState = request.app.state.server
    return {
        "object": "list",
        "data": [
            {
                "id": state.config.model_id,
                "object": "model",
                "created": int(state.started),
                "owned_by": "openblip",
                "capabilities": capabilities(state),
                "scorer": state.engine.scorer.source.source if state.engine.scorer is not None else None,
            }
        ],
    }


def _last_user_parts(req: ChatRequest) -> tuple[list[str], str]:
    """(image URLs, question text) of the last user message."""
    users = [m for m in req.messages if m.role == "user"]
    if not users:
        raise ApiError(422, "messages: no user message")
    content = users[-1].content
    if isinstance(content, str):
        return [], content
    urls = [p.image_url.url for p in content if isinstance(p, ImagePart)]
    text = " ".join(p.text for p in content if isinstance(p, TextPart))
    return urls, text


def _generation(req: ChatRequest, max_length: int, base: GenerationConfig, max_positions: int) -> GenerationConfig:
    limit = min(max_positions, max_length)
    temperature = req.temperature or 0.0
    try:
        if temperature > 0:
            return GenerationConfig(
                max_length=limit,
                min_length=min(base.min_length, limit),
                do_sample=True,
                top_p=0.9 if req.top_p is None else req.top_p,
                top_k=50,
                temperature=temperature,
                repetition_penalty=1.1,
                num_return_sequences=req.n,
                seed=req.seed,
            )
        return GenerationConfig(
            max_length=limit,
            min_length=min(base.min_length, limit),
            num_beams=max(base.num_beams, req.n),
            num_return_sequences=req.n,
        )
    except ValueError as e:
        raise ApiError(422, str(e)) from e


@router.post(
    "/v1/chat/completions", openapi_extra=body_spec("ChatRequest"), summary="OpenAI-compatible: caption or answer"
)
async def chat_completions(request: Request) -> dict[str, Any]:
    state: ServerState = request.app.state.server
    req, _ = await state.parse(request, ChatRequest)
    if req.model != state.config.model_id:
        raise ApiError(404, f"model {req.model!r} is not served here; this server serves {state.config.model_id!r}")
    if req.stream:
        raise ApiError(400, "stream: streaming is not supported; send stream: false")
    urls, text = _last_user_parts(req)
    if len(urls) != 1:
        raise ApiError(400, f"the last user message must hold exactly one image_url part, got {len(urls)}")
    can = capabilities(state)
    question = text.strip()
    max_new = req.max_completion_tokens or req.max_tokens
    positions = state.engine.model.model.cfg.text.max_positions
    tokenizer = state.engine.model.tokenizer
    if question:
        if not can["vqa"]:
            raise ApiError(
                400, f"model {state.config.model_id} captions and answers no questions: send the image without text"
            )
        try:
            clean_question(question)
        except ValueError as e:
            raise ApiError(422, f"the question: {e}") from e
        # VQA lengths count [DEC]: max_tokens new tokens -> max_length 1 + max_tokens
        cfg = _generation(req, VQA_GENERATION.max_length if max_new is None else 1 + max_new, VQA_GENERATION, positions)
        key: Any = VqaKey(cfg, None, uuid.uuid4().hex if cfg.do_sample else None)
    else:
        if not can["caption"]:
            raise ApiError(400, f"model {state.config.model_id} answers questions: add a text part with the question")
        plen = prompt_ids(tokenizer, DEFAULT_PROMPT).numel()
        base = caption_config()
        cfg = _generation(req, BEAM_DEFAULTS.max_length if max_new is None else plen + max_new, base, positions)
        key = CaptionKey(cfg, DEFAULT_PROMPT)
    (image,) = await state.images(urls, None)
    item = VqaItem(image.image, question) if question else CaptionItem(image.image, 0)
    (result,) = await state.submit(key, [item])
    result_: Generated = result
    await state.record(
        "answer" if question else "caption", [image], [result_], {"chat": req.model_dump(exclude={"messages"})}
    )
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": o.text},
            "finish_reason": "stop" if o.finished else "length",
            "logprobs": None,
            "itm_score": o.itm,
        }
        for i, o in enumerate(result_.outputs)
    ]
    completion = sum(len(tokenizer.encode([o.text]).ids[0]) - 2 for o in result_.outputs)
    prompt = len(tokenizer.encode([question]).ids[0]) if question else plen
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": state.config.model_id,
        "choices": choices,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }
