"""BERT-style text names, shared by the original `models/med.py` and transformers' `BlipText*`.

Both foreign formats name the text transformers alike (transformers' port kept med.py's
names), so these rules serve both key maps; only the prefixes differ by component.
"""

from __future__ import annotations


def text_rules(ours: str, theirs: str) -> dict[str, str]:
    """Rules for one text transformer: our `{ours}.layers.{i}...` -> their `{theirs}.encoder.layer.{i}...`."""
    rules = {
        f"{ours}.embeddings.word": f"{theirs}.embeddings.word_embeddings",
        f"{ours}.embeddings.position": f"{theirs}.embeddings.position_embeddings",
        f"{ours}.embeddings.norm": f"{theirs}.embeddings.LayerNorm",
        f"{ours}.layers.{{i}}.ffn.mlp.fc1": f"{theirs}.encoder.layer.{{i}}.intermediate.dense",
        f"{ours}.layers.{{i}}.ffn.mlp.fc2": f"{theirs}.encoder.layer.{{i}}.output.dense",
        f"{ours}.layers.{{i}}.ffn.norm": f"{theirs}.encoder.layer.{{i}}.output.LayerNorm",
    }
    for attn, their_attn in (("self_attn", "attention"), ("cross_attn", "crossattention")):
        block = f"{ours}.layers.{{i}}.{attn}"
        their_block = f"{theirs}.encoder.layer.{{i}}.{their_attn}"
        rules.update(
            {
                f"{block}.query": f"{their_block}.self.query",
                f"{block}.key": f"{their_block}.self.key",
                f"{block}.value": f"{their_block}.self.value",
                f"{block}.out": f"{their_block}.output.dense",
                f"{block}.norm": f"{their_block}.output.LayerNorm",
            }
        )
    return rules


# The decoder: BertLMHeadModel = `bert` + `cls.predictions` (the LM head's decoder weight is
# tied to the word embeddings, so it has no rule of its own: see each format's `tied`).
DECODER_RULES: dict[str, str] = {
    **text_rules("text_decoder.transformer", "text_decoder.bert"),
    "text_decoder.head.dense": "text_decoder.cls.predictions.transform.dense",
    "text_decoder.head.norm": "text_decoder.cls.predictions.transform.LayerNorm",
    "text_decoder.head.bias": "text_decoder.cls.predictions.bias",
}
ENCODER_RULES: dict[str, str] = text_rules("text_encoder", "text_encoder")

# The LM head's copies of tied tensors, present in torch.save'd state dicts (both formats)
# and absent from transformers 5's safetensors files: duplicate -> the key it must equal.
TIED_DECODER: dict[str, str] = {
    "text_decoder.cls.predictions.decoder.weight": "text_decoder.bert.embeddings.word_embeddings.weight",
    "text_decoder.cls.predictions.decoder.bias": "text_decoder.cls.predictions.bias",
}

# Every med.py embedding holds a persistent `position_ids` buffer (arange); transformers
# made it non-persistent later, but older hub `pytorch_model.bin` files still carry it.
POSITION_IDS = r".*\.position_ids"
