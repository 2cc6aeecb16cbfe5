from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from openblip.config import VisionConfig
from openblip.model.vision import VisionTransformer, resize_pos_embed


def test_token_count_any_square_size() -> None:
    vit = VisionTransformer(VisionConfig(width=32, depth=1, heads=2, mlp_dim=64, image_size=64)).eval()
    assert vit(torch.randn(2, 3, 64, 64)).shape == (2, 1 + 16, 32)
    assert vit(torch.randn(1, 3, 96, 96)).shape == (1, 1 + 36, 32)
    with pytest.raises(ValueError, match="square"):
        vit(torch.randn(1, 3, 64, 96))


def test_resize_pos_embed_keeps_cls_and_is_bicubic() -> None:
    pos = torch.randn(1, 1 + 16, 8)
    out = resize_pos_embed(pos, 6)
    assert out.shape == (1, 37, 8)
    torch.testing.assert_close(out[:, :1], pos[:, :1])
    grid = pos[:, 1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(6, 6), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 36, 8)
    torch.testing.assert_close(out[:, 1:], ref)
    assert resize_pos_embed(pos, 4) is pos
    with pytest.raises(ValueError, match="square"):
        resize_pos_embed(torch.randn(1, 1 + 15, 8), 4)


def test_drop_path_only_in_training() -> None:
    torch.manual_seed(0)
    cfg = VisionConfig(width=32, depth=4, heads=2, mlp_dim=64, image_size=32, drop_path=0.5)
    vit = VisionTransformer(cfg)
    plain = VisionTransformer(dataclasses.replace(cfg, drop_path=0.0)).eval()
    plain.load_state_dict(vit.state_dict())
    x = torch.randn(4, 3, 32, 32)
    want = plain(x)
    vit.eval()  # the same weights without drop-path: the same numbers, exactly
    assert torch.equal(vit(x), want)
    vit.train()  # residual branches dropped at random (rates 0, 1/6, 1/3, 1/2 by depth)
    assert not torch.allclose(vit(x), want)
