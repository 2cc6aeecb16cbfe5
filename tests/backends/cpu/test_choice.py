"""The one backend choice (backends/cpu/__init__.py, Blip.use_cpu_kernels): how auto / on / off
and $OPENBLIP_CPU_KERNEL resolve, that a model records and shows it, and that the kernels run
exactly in fp32 CPU inference (torch.inference_mode), never with gradients, in a no_grad
training pass, under autocast or in another dtype; torch.compile and torch.export see them as ops."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from openblip.backends import cpu
from openblip.backends.cpu import build
from openblip.model.blip import Blip

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def kernels_here() -> None:
    why = build.available()
    if why is not None:
        pytest.skip(f"the kernels cannot run here: {why}")


class _Ops(TorchDispatchMode):
    """Records the openblip ops dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.called: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.namespace == "openblip":
            self.called.append(func._opname)
        return func(*args, **(kwargs or {}))


@contextmanager
def recording() -> Iterator[list[str]]:
    mode = _Ops()
    with mode:
        yield mode.called


@pytest.mark.parametrize(
    ("env", "want"),
    [(None, "auto"), ("", "auto"), ("1", "auto"), ("0", "off"), ("off", "off"), ("all", "on"), ("ON", "on")],
)
def test_environment_variable(monkeypatch: pytest.MonkeyPatch, env: str | None, want: str) -> None:
    if env is None:
        monkeypatch.delenv(cpu.ENV, raising=False)
    else:
        monkeypatch.setenv(cpu.ENV, env)
    assert cpu.setting_of(None).value == want
    assert cpu.setting_of("off") is cpu.KernelSetting.OFF  # an explicit choice wins over the variable


def test_bad_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu.ENV, "fast")
    with pytest.raises(ValueError, match="OPENBLIP_CPU_KERNEL='fast'"):
        cpu.setting_of(None)
    with pytest.raises(ValueError, match="cpu_kernels 'yes' is not one of auto, on, off"):
        cpu.setting_of("yes")


def test_off_and_models_that_cannot_take_them() -> None:
    assert cpu.choose("off", CPU, torch.float32) == cpu.OFF and not cpu.OFF.enabled
    for setting in ("auto", "on"):  # a bf16 or GPU model: torch's ops, whatever the setting
        bf16 = cpu.choose(setting, CPU, torch.bfloat16)
        assert not bf16.enabled and bf16.setting.value == setting and "bfloat16" in bf16.note
        assert "the model is meta" in str(cpu.choose(setting, torch.device("meta"), torch.float32))


def test_auto_takes_what_was_measured_per_cpu_kind(kernels_here: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, measured in cpu.AUTO.items():
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda kind=kind: kind)
        got = cpu.choose("auto", CPU, torch.float32)
        assert got.setting is cpu.KernelSetting.AUTO and got.note == kind
        assert (got.small_linear, got.blocked_linear, got.attention, got.folded_cross_attention) == (
            measured.small_linear,
            measured.blocked_linear,
            measured.attention,
            measured.folded_cross_attention,
        )
        on = cpu.choose("on", CPU, torch.float32)
        assert on.small_linear and on.blocked_linear and on.attention and on.folded_cross_attention
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512_NEXT")
    assert not cpu.choose("auto", CPU, torch.float32).enabled  # a kind nobody measured: torch's ops


@pytest.fixture(scope="module")
def model(kernels_here: None, tiny_blip: Callable[[str, int], Blip]) -> Blip:
    return tiny_blip("full", 3)


def _run(model: Blip, pixels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Vision (blocked product, attention), then the decoder over 10 rows (small product) with
    its cross-attention folded where the choice takes it."""
    return model.text_decoder(ids, None, model.encode_image(pixels))  # type: ignore[misc]


INPUTS = (torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), torch.arange(1000, 1010).view(2, 5))


def test_model_records_and_shows_the_choice(model: Blip, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="openblip.model.blip"):
        chosen = model.use_cpu_kernels("on")
    assert model.cpu_kernels == chosen and chosen.enabled
    assert "CPU kernels: on: small_linear, blocked_linear, attention, folded_cross_attention" in caplog.text
    assert "cpu_kernels=on: small_linear" in repr(model).splitlines()[1]
    assert model.text_decoder is not None and model.text_decoder.transformer.cpu_kernels == chosen
    assert model.visual_encoder.blocks[0].attn.qkv.cpu_kernels == chosen
    model.use_cpu_kernels("off")
    assert model.visual_encoder.blocks[0].attn.qkv.cpu_kernels == cpu.OFF and "cpu_kernels=off" in repr(model)


def test_kernels_run_exactly_in_inference(model: Blip) -> None:
    model.use_cpu_kernels("off")
    with torch.inference_mode(), recording() as none:
        want = _run(model, *INPUTS)
    assert none == []
    model.use_cpu_kernels("on")
    try:
        with torch.inference_mode(), recording() as called:
            got = _run(model, *INPUTS)
        assert set(called) == {"blocked_linear", "attention", "small_linear", "context_scores", "context_mix"}
        # the same function up to float order: logits of O(10) from sums of a few hundred terms
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)
        with torch.no_grad(), recording() as no_grad:  # e.g. the momentum encoders while training
            _run(model, *INPUTS)
        with recording() as training:
            _run(model, *INPUTS).sum().backward()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), recording() as autocast:
            _run(model, *INPUTS)
        assert no_grad == training == autocast == []
    finally:
        model.zero_grad(set_to_none=True)
        model.use_cpu_kernels("off")


def test_compile_fullgraph_and_export_see_the_ops(model: Blip) -> None:
    from torch._dynamo.testing import CompileCounterWithBackend

    model.use_cpu_kernels("on")
    try:
        with torch.inference_mode():
            want = _run(model, *INPUTS)
            counter = CompileCounterWithBackend("aot_eager")
            got = torch.compile(lambda p, i: _run(model, p, i), fullgraph=True, backend=counter)(*INPUTS)
            torch.testing.assert_close(got, want, atol=0, rtol=0)
            traced = {str(n.target) for n in counter.graphs[0].graph.nodes}
            every = ("blocked_linear", "attention", "small_linear", "context_scores", "context_mix")
            assert {f"openblip.{op}" for op in every} <= traced  # one graph, each kernel an op in it
            exported = torch.export.export(model.visual_encoder, (INPUTS[0],))
            ops = {str(n.target) for n in exported.graph.nodes}
            assert {"openblip.blocked_linear.default", "openblip.attention.default"} <= ops
            torch.testing.assert_close(exported.module()(INPUTS[0]), model.encode_image(INPUTS[0]), atol=0, rtol=0)
    finally:
        model.use_cpu_kernels("off")
        torch._dynamo.reset()


def test_folding_only_with_the_kernels(model: Blip) -> None:
    """Folded cross-attention is taken only where its products run on the kernels."""
    decoder = model.text_decoder
    assert decoder is not None
    tokens = torch.randn(2, 17, model.cfg.vision.width)
    try:
        for setting, folds in (("off", False), ("on", True)):
            model.use_cpu_kernels(setting)
            with torch.inference_mode():
                assert decoder.transformer.folding_pays(4, tokens) is folds
            assert not decoder.transformer.folding_pays(4, tokens)  # never outside inference
    finally:
        model.use_cpu_kernels("off")
