"""The BLIP network: a ViT image encoder and one BERT-style text transformer used three ways."""

from openblip.model.blip import Blip
from openblip.model.cache import KVCache
from openblip.model.text import TextDecoder, TextTransformer
from openblip.model.vision import VisionTransformer, resize_pos_embed

__all__ = ["Blip", "KVCache", "TextDecoder", "TextTransformer", "VisionTransformer", "resize_pos_embed"]
