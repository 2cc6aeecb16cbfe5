"""MiniLM text initialisation: a strict key map whose result computes exactly what the BERT does."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from openblip.config import VisionConfig, preset
from openblip.model.blip import Blip
from openblip.train.build import model_config
from openblip.train.config import ModelSection, SizeOverrides, TextInit
from openblip.train.text_init import bert_to_text_state, init_text_from_minilm, minilm_dir, minilm_text_config

transformers = pytest.importorskip("transformers")


def _model(layout: str, depth: int = 0) -> Blip:
    cfg = preset("tiny", layout)
    text = minilm_text_config(cfg.text, depth=depth)
    torch.manual_seed(0)
    model = Blip(cfg.replace(text=text, vision=VisionConfig(width=32, depth=1, heads=2, mlp_dim=64, image_size=32)))
    init_text_from_minilm(model, seed=0)
    return model.eval()


def test_config_takes_minilm_sizes() -> None:
    text = minilm_text_config(preset("tiny").text)
    assert (text.width, text.depth, text.heads, text.mlp_dim, text.vocab_size) == (384, 6, 12, 1536, 30524)
    assert minilm_text_config(preset("tiny").text, depth=2).depth == 2
    with pytest.raises(ValueError, match="cannot keep 7"):
        minilm_text_config(preset("tiny").text, depth=7)


def test_state_resizes_words_and_folds_token_type() -> None:
    bert = load_file(str(minilm_dir() / "model.safetensors"))
    state = bert_to_text_state(bert, 30524, torch.Generator().manual_seed(0), depth=6)
    words = state["embeddings.word.weight"]
    assert words.shape == (30524, 384)
    assert torch.equal(words[:30522], bert["embeddings.word_embeddings.weight"])
    assert 0.01 < float(words[30522:].std()) < 0.03  # BERT's init for [DEC]/[ENC]
    expected = bert["embeddings.position_embeddings.weight"] + bert["embeddings.token_type_embeddings.weight"][0]
    assert torch.equal(state["embeddings.position.weight"], expected)
    assert len([k for k in state if k.startswith("layers.")]) == 6 * 16
    with pytest.raises(ValueError, match="not accounted for"):
        bert_to_text_state({**bert, "encoder.extra.weight": torch.zeros(1)}, 30524, torch.Generator(), depth=6)


@pytest.mark.parametrize("depth", [6, 2])
def test_text_encoder_computes_what_the_bert_computes(depth: int) -> None:
    model = _model("retrieval", depth)
    bert = transformers.BertModel.from_pretrained(str(minilm_dir()), add_pooling_layer=False).eval()
    ids = torch.tensor([[101, 1037, 2417, 4418, 2003, 2682, 1037, 2630, 102, 0], [101, 7592, 102, 0, 0, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        theirs = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[depth]
        ours = model.text_hidden(ids, mask)
    keep = mask.bool()
    assert torch.allclose(ours[keep], theirs[keep], atol=2e-5)


def test_decoder_starts_from_the_same_bert() -> None:
    model = _model("pretrain", depth=2)
    enc, dec = model.text_encoder, model.text_decoder
    assert enc is not None and dec is not None
    for i in range(2):
        assert torch.equal(enc.blocks[i].self_attn.query.weight, dec.transformer.blocks[i].self_attn.query.weight)
        assert enc.blocks[i].self_attn is not dec.transformer.blocks[i].self_attn  # not shared (paper 3.2)
    caption = _model("caption", depth=2)  # a decoder without an encoder loads the same weights
    assert caption.text_decoder is not None
    assert torch.equal(caption.text_decoder.transformer.blocks[1].ffn.mlp.fc1.weight, enc.blocks[1].ffn.mlp.fc1.weight)


def test_size_overrides_conflict_with_minilm() -> None:
    sec = ModelSection(arch="tiny", text_init=TextInit.MINILM, text=SizeOverrides(width=64))
    with pytest.raises(ValueError, match=r"model\.text\.width conflicts"):
        model_config(sec)
    ok = model_config(ModelSection(arch="tiny", text_init=TextInit.MINILM, text=SizeOverrides(depth=3)))
    assert ok.text.depth == 3 and ok.text.width == 384
