"""Fetching released checkpoints: hub ids through huggingface_hub, http(s) URLs into a cache.

The released names are listed in RELEASES for users (blip_official.md section 3 and the
Salesforce organisation on the Hugging Face hub). Downloads are atomic (a temporary file in
the cache directory, renamed when complete) and fail fast with a message that says how to pass
a local path instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import NamedTuple

from openblip.cache_dir import cache_dir
from openblip.files import make_shareable

log = logging.getLogger(__name__)

SALESFORCE_BASE = "https://storage.googleapis.com/sfr-vision-language-research/BLIP/models/"
URL_TIMEOUT_S = 30.0  # per socket operation; an unreachable host fails at once or after this
HUB_ETAG_TIMEOUT_S = 10.0
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


class Release(NamedTuple):
    source: str  # hub id or URL, as load_model accepts it
    layout: str  # config.LAYOUTS name
    image_size: int  # size the weights were fine-tuned at
    what: str


RELEASES: tuple[Release, ...] = (
    Release("Salesforce/blip-image-captioning-base", "caption", 384, "ViT-B captioner, COCO"),
    Release("Salesforce/blip-image-captioning-large", "caption", 384, "ViT-L captioner, COCO"),
    Release("Salesforce/blip-vqa-base", "vqa", 384, "ViT-B VQA (pos. embeddings resized from 480)"),
    Release("Salesforce/blip-vqa-capfilt-large", "vqa", 384, "ViT-B VQA, CapFilt-L data"),
    Release("Salesforce/blip-itm-base-coco", "retrieval", 384, "ViT-B ITM/ITC, COCO"),
    Release("Salesforce/blip-itm-large-coco", "retrieval", 384, "ViT-L ITM/ITC, COCO"),
    Release("Salesforce/blip-itm-base-flickr", "retrieval", 384, "ViT-B ITM/ITC, Flickr30k"),
    Release("Salesforce/blip-itm-large-flickr", "retrieval", 384, "ViT-L ITM/ITC, Flickr30k"),
    Release(SALESFORCE_BASE + "model_base_14M.pth", "pretrain", 224, "ViT-B pre-trained, 14M images"),
    Release(SALESFORCE_BASE + "model_base.pth", "pretrain", 224, "ViT-B pre-trained, 129M images"),
    Release(SALESFORCE_BASE + "model_base_capfilt_large.pth", "pretrain", 224, "ViT-B pre-trained, CapFilt-L"),
    Release(SALESFORCE_BASE + "model_large.pth", "pretrain", 224, "ViT-L pre-trained, 129M images"),
    Release(SALESFORCE_BASE + "model_base_caption_capfilt_large.pth", "caption", 384, "ViT-B captioner, COCO"),
    Release(SALESFORCE_BASE + "model_large_caption.pth", "caption", 384, "ViT-L captioner, COCO"),
    Release(SALESFORCE_BASE + "model_base_retrieval_coco.pth", "retrieval", 384, "ViT-B retrieval, COCO"),
    Release(SALESFORCE_BASE + "model_large_retrieval_coco.pth", "retrieval", 384, "ViT-L retrieval, COCO"),
    Release(SALESFORCE_BASE + "model_base_retrieval_flickr.pth", "retrieval", 384, "ViT-B retrieval, Flickr30k"),
    Release(SALESFORCE_BASE + "model_large_retrieval_flickr.pth", "retrieval", 384, "ViT-L retrieval, Flickr30k"),
    Release(SALESFORCE_BASE + "model_vqa.pth", "vqa", 480, "ViT-B VQA, 129M pre-training"),
    Release(SALESFORCE_BASE + "model_base_vqa_capfilt_large.pth", "vqa", 480, "ViT-B VQA, CapFilt-L"),
)


class SourceUnavailable(OSError):
    """A remote checkpoint that could not be fetched (offline, unknown, refused)."""


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def is_hub_id(source: str) -> bool:
    return HUB_ID.fullmatch(source) is not None


def download_url(url: str, *, timeout: float = URL_TIMEOUT_S, cache: Path | None = None) -> Path:
    """The cached copy of `url`, downloading it first if needed."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    target = (cache or cache_dir()) / "urls" / f"{digest}-{name}"
    if target.is_file():
        log.info("using cached %s for %s", target, url)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, length=1 << 20)
        make_shareable(tmp)  # mkstemp's 0600 would keep a shared cache's models from the other users
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as e:
        Path(tmp).unlink(missing_ok=True)
        raise SourceUnavailable(
            f"could not fetch {url} ({getattr(e, 'reason', e)}); download it yourself and pass the local "
            f"file path instead (e.g. `openblip convert /path/to/{name} --out DIR`)"
        ) from e
    return target


def download_hub(repo_id: str) -> Path:
    """A local snapshot of a hub model (config, weights, tokenizer files) via huggingface_hub.

    safetensors weights are fetched when the repository has them, pytorch_model.bin only
    otherwise. Honours HF_HUB_OFFLINE and the standard hub cache.
    """
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise SourceUnavailable(
            f"{repo_id} looks like a hub id, but huggingface_hub is not installed "
            "(pip install 'openblip[hub]'), and there is no local path of that name"
        ) from e
    common = ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]
    try:
        path = Path(
            snapshot_download(
                repo_id,
                allow_patterns=[*common, "model.safetensors", "model.safetensors.index.json", "model-*.safetensors"],
                etag_timeout=HUB_ETAG_TIMEOUT_S,
            )
        )
        if not any(path.glob("*.safetensors")):
            path = Path(
                snapshot_download(
                    repo_id,
                    allow_patterns=[*common, "pytorch_model.bin", "pytorch_model*.bin", "pytorch_model.bin.index.json"],
                    etag_timeout=HUB_ETAG_TIMEOUT_S,
                )
            )
    except Exception as e:  # huggingface_hub's errors (offline, not found, HTTP) share no base but Exception
        raise SourceUnavailable(
            f"could not fetch {repo_id} from the Hugging Face hub ({type(e).__name__}: {e}); when offline, "
            "download the model directory elsewhere and pass its local path (a directory with config.json "
            "and model.safetensors or pytorch_model.bin)"
        ) from e
    return path
