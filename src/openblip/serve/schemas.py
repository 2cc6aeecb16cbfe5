"""Request bodies, validated with pydantic: unknown fields, wrong types and out-of-range values
are refused (422) with a message naming the field. Defaults are those of the Python API and the
CLI (the original BLIP's). Limits that the server's flags set (images per request, texts per
request) are checked by the app, since they are not known when this module is imported.

Images are strings: `data:image/...;base64,...` URLs, or http(s) URLs when the server runs with
--allow-remote-images. Multipart requests upload them as files instead (fields `image`/`images`);
their other fields carry the same names as here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from openblip.tasks.caption import DEFAULT_PROMPT
from openblip.tasks.classify import DEFAULT_TEMPLATE

_TEXT = 2000  # characters in one text, question, label or prompt: a longer one is a mistake
# An 8x8 orange PNG: the examples of /docs (and of API testers' explicit phase) are real requests
EXAMPLE_IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mM8EaDBgA0w"
    "MeAAg1MCAP8oAVCGkvfKAAAAAElFTkSuQmCC"
)
ImageRef = Annotated[
    str,
    Field(min_length=1, description="data:image/...;base64,... URL (or http(s) URL)", examples=[EXAMPLE_IMAGE]),
]
Text = Annotated[str, Field(max_length=_TEXT)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaptionRequest(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"images": [EXAMPLE_IMAGE]}]})

    images: list[ImageRef] = Field(min_length=1)
    prompt: Text = Field(DEFAULT_PROMPT, description="the decoder continues this text; removed from the caption")
    sample: bool = Field(False, description="nucleus sampling instead of beam search")
    num_beams: int = Field(3, ge=1, le=16)
    max_length: int = Field(20, ge=2, le=512, description="tokens, [DEC] and the prompt included")
    min_length: int = Field(5, ge=0, le=512)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    top_k: int = Field(50, ge=0, le=100_000)
    temperature: float = Field(1.0, gt=0.0, le=100.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=100.0)
    num_captions: int = Field(1, ge=1, le=16)
    seed: Seed | None = None


class VqaRequest(_Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"images": [EXAMPLE_IMAGE], "question": "what color is it?"}]}
    )

    images: list[ImageRef] = Field(min_length=1)
    question: Text = Field(min_length=1)
    answers: list[Text] | None = Field(None, min_length=1, description="rank these candidates instead of generating")
    num_beams: int = Field(3, ge=1, le=16)
    max_length: int = Field(10, ge=2, le=512)
    min_length: int = Field(1, ge=0, le=512)


class MatchRequest(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"images": [EXAMPLE_IMAGE], "texts": ["an orange square", "a dog"]}]},
    )

    images: list[ImageRef] = Field(min_length=1)
    texts: list[Text] = Field(min_length=1)


class EmbedRequest(_Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"images": [EXAMPLE_IMAGE], "texts": ["an orange square"]}]}
    )

    images: list[ImageRef] | None = None
    texts: list[Text] | None = None


class ClassifyRequest(_Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"images": [EXAMPLE_IMAGE], "labels": ["orange", "blue"]}]}
    )

    images: list[ImageRef] = Field(min_length=1)
    labels: list[Text] = Field(min_length=1)
    template: Text = Field(DEFAULT_TEMPLATE, description="a label's prompt; {} is replaced by the label")
    top_k: int = Field(5, ge=1, le=1000)
    rerank: int = Field(0, ge=0, le=1000)


class SearchRequest(_Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"texts": ["an orange square"], "k": 3}]})

    texts: list[Text] | None = Field(None, description="find images of the index (an index of images)")
    images: list[ImageRef] | None = Field(None, description="find texts of the index (an index of texts)")
    k: int = Field(10, ge=1, le=1000)
    rerank: int = Field(32, ge=0, le=1000)


class ExplainRequest(_Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"images": [EXAMPLE_IMAGE], "text": "an orange square"}]}
    )

    images: list[ImageRef] = Field(min_length=1)
    text: Text = Field(min_length=1, description="the caption or text whose match is explained")
    layer: int | None = Field(
        None, ge=0, le=1000, description="cross-attention layer, 0-based (default: the middle one; never the last)"
    )


# ---- OpenAI chat completions ----------------------------------------------------------------------
class ImageUrl(_Strict):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None  # accepted, no effect: BLIP reads one size


class TextPart(_Strict):
    type: Literal["text"]
    text: str = Field(max_length=_TEXT)


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None


class ChatRequest(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "M",
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": EXAMPLE_IMAGE}}]}
                    ],
                }
            ]
        },
    )

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=512, description="new tokens; default: the original's lengths")
    max_completion_tokens: int | None = Field(None, ge=1, le=512, description="the newer name of max_tokens")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 or omitted: beam search; > 0: sampling")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="sampling: nucleus mass (default 0.9)")
    n: int = Field(1, ge=1, le=16)
    seed: Seed | None = None
    stream: bool = False
    user: str | None = None


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    CaptionRequest,
    VqaRequest,
    MatchRequest,
    EmbedRequest,
    ClassifyRequest,
    SearchRequest,
    ExplainRequest,
    ChatRequest,
)
