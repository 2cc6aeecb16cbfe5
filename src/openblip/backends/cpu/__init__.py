"""The CPU backend: our C kernels (csrc/) for fp32 CPU inference, as torch custom ops
(torch.ops.openblip.*, ops.py), chosen once per model. This module is the one interface the
model uses; nothing else imports build.py or ops.py.

    choose(setting, device, dtype)  "auto" | "on" | "off" (None: $OPENBLIP_CPU_KERNEL, else
                                    auto) -> CpuKernels, the choice a model records
                                    (Blip.use_cpu_kernels; openblip.load's cpu_kernels)
    linear / self_attention / context_scores / context_mix
                                    the kernel's result where the choice takes it for this
                                    call, else None (the caller runs torch's op)
    folds(kernels, context)         whether cross-attention may read its context folded
    available()                     None where the kernels run here (building them), else why not

A choice takes effect only in inference (under torch.inference_mode, no autocast) on fp32 CPU
tensors: those are the kernels' preconditions (they have no backward, no other dtype). Training,
the momentum encoders' no_grad passes, autocast and bf16 run torch's ops.

What "auto" takes per CPU kind is what benchmarks/RESULTS.md measured fastest there (AUTO).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, replace

import torch

from openblip.backends.cpu import ops
from openblip.backends.cpu.build import KernelsUnavailable, available

ENV = "OPENBLIP_CPU_KERNEL"
MAX_SMALL_ROWS = ops.MAX_SMALL_ROWS

__all__ = [
    "AUTO",
    "ENV",
    "OFF",
    "CpuKernels",
    "KernelSetting",
    "KernelsUnavailable",
    "available",
    "choose",
    "context_mix",
    "context_scores",
    "folds",
    "linear",
    "self_attention",
]


class KernelSetting(enum.Enum):
    AUTO = "auto"  # what was measured fastest on this kind of CPU, torch's ops where the kernels cannot run
    ON = "on"  # every kernel; an error where they cannot run
    OFF = "off"  # torch's ops only


@dataclass(frozen=True)
class CpuKernels:
    """Which of our kernels a model's fp32 CPU inference takes (each False: torch's op)."""

    setting: KernelSetting = KernelSetting.OFF
    small_linear: bool = False  # linear layers over <= MAX_SMALL_ROWS rows (decoding steps)
    blocked_linear: bool = False  # every other linear layer
    attention: bool = False  # the vision encoder's self-attention
    folded_cross_attention: bool = False  # cross-attention through folded projections, for few queries
    note: str = ""  # why, in a few words

    @property
    def enabled(self) -> bool:
        return self.small_linear or self.blocked_linear or self.attention or self.folded_cross_attention

    def __str__(self) -> str:
        names = [
            name
            for name, on in (
                ("small_linear", self.small_linear),
                ("blocked_linear", self.blocked_linear),
                ("attention", self.attention),
                ("folded_cross_attention", self.folded_cross_attention),
            )
            if on
        ]
        taken = ", ".join(names) if names else "torch ops only"
        return f"{self.setting.value}: {taken}" + (f" ({self.note})" if self.note else "")


OFF = CpuKernels()
ALL = CpuKernels(KernelSetting.ON, True, True, True, True)

# What "auto" takes per torch CPU capability, from benchmarks/RESULTS.md ("CPU backend"): on
# both kinds every kernel was fastest or within the run-to-run spread of the fastest.
AUTO: dict[str, CpuKernels] = {
    "AVX2": replace(ALL, setting=KernelSetting.AUTO),
    "AVX512": replace(ALL, setting=KernelSetting.AUTO),
}

_ENV_VALUES = {"0": "off", "off": "off", "1": "auto", "auto": "auto", "": "auto", "all": "on", "on": "on"}


def setting_of(value: str | None) -> KernelSetting:
    """ "auto" | "on" | "off"; None reads $OPENBLIP_CPU_KERNEL (0 / off, 1 / auto, all / on;
    unset: auto). ValueError naming a value that is none of these."""
    if value is None:
        env = os.environ.get(ENV, "").strip().lower()
        if env not in _ENV_VALUES:
            raise ValueError(f"${ENV}={os.environ[ENV]!r} is not one of 0, 1, all, off, auto, on")
        value = _ENV_VALUES[env]
    try:
        return KernelSetting(value)
    except ValueError:
        raise ValueError(f"cpu_kernels {value!r} is not one of auto, on, off") from None


def choose(setting: str | None, device: torch.device, dtype: torch.dtype) -> CpuKernels:
    """The choice for a model on `device` in `dtype`. A model that is not fp32 on the CPU takes
    torch's ops whatever the setting (noted). Where this machine cannot run the kernels (not
    x86-64 with AVX2, no compiler, a failed build, which also warns once), "on" raises
    KernelsUnavailable saying why and "auto" takes torch's ops, noting why."""
    wanted = setting_of(setting)
    if wanted is KernelSetting.OFF:
        return OFF
    if device.type != "cpu" or dtype != torch.float32:
        what = device.type if device.type != "cpu" else str(dtype).removeprefix("torch.")
        return replace(OFF, setting=wanted, note=f"not used: the model is {what}, the kernels are fp32 CPU code")
    why = available()
    if why is not None:
        if wanted is KernelSetting.ON:
            raise KernelsUnavailable(f"cpu_kernels='on' but the CPU kernels cannot run here: {why}")
        return replace(OFF, setting=KernelSetting.AUTO, note=why)
    capability = torch.backends.cpu.get_cpu_capability()
    if wanted is KernelSetting.ON:
        return replace(ALL, note=capability)
    measured = AUTO.get(capability)
    if measured is None:  # a kind the kernels run on but nobody measured: torch's ops
        return replace(OFF, setting=KernelSetting.AUTO, note=f"{capability}: not measured")
    return replace(measured, note=capability)


def _applies(x: torch.Tensor) -> bool:
    """The kernels' preconditions for this call: inference, no autocast, an fp32 CPU tensor."""
    return _inference() and not torch.is_autocast_enabled("cpu") and x.dtype == torch.float32 and x.device.type == "cpu"


def _inference() -> bool:
    """Under torch.inference_mode. torch.compile cannot read that mode (dynamo refuses
    is_inference_mode_enabled, a graph break); it does guard grad mode, which inference mode
    turns off, so a compiled graph reads that instead."""
    if torch.compiler.is_compiling():
        return not torch.is_grad_enabled()
    return torch.is_inference_mode_enabled()


def linear(
    kernels: CpuKernels, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor | None:
    """x (..., K) @ weight (N, K)^T + bias through a kernel, or None when the choice leaves it to
    F.linear."""
    if not (kernels.small_linear or kernels.blocked_linear) or not _applies(x) or weight.dtype != torch.float32:
        return None
    k, n = x.shape[-1], weight.shape[0]
    flat = x.reshape(-1, k)
    m = flat.shape[0]
    if not (m and k and n):
        return None
    if m <= MAX_SMALL_ROWS:
        if not kernels.small_linear or k % 8:
            return None
        out = torch.ops.openblip.small_linear(flat, weight, bias)
    elif kernels.blocked_linear:
        out = torch.ops.openblip.blocked_linear(flat, weight, bias)
    else:
        return None
    return out.view(*x.shape[:-1], n)


def self_attention(kernels: CpuKernels, qkv: torch.Tensor, heads: int) -> torch.Tensor | None:
    """Unmasked self-attention from a fused projection qkv (B, N, 3 D) -> (B, N, D) through the
    kernel, or None (SDPA)."""
    hd = qkv.shape[-1] // 3 // heads
    if not kernels.attention or not _applies(qkv) or hd % 16 or not qkv.shape[0] or not qkv.shape[1]:
        return None
    return torch.ops.openblip.attention(qkv, heads)


def folds(kernels: CpuKernels, context: torch.Tensor) -> bool:
    """Whether cross-attention may read `context` (Bc, N, Dc) through folded projections: only
    with the kernels for its products (with torch's batched products folding was measured not
    to pay), in inference on fp32 CPU tensors. Whether it pays for the number of queries is the
    model's arithmetic (TextTransformer.folding_pays)."""
    return kernels.folded_cross_attention and _applies(context) and context.shape[-1] % 16 == 0


def context_scores(kernels: CpuKernels, q: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor | None:
    """q (C, R, D), tokens (C, N, D) -> q[c] tokens[c]^T (C, R, N) through the kernel, or None (bmm)."""
    if not folds(kernels, tokens):
        return None
    return torch.ops.openblip.context_scores(q, tokens)


def context_mix(kernels: CpuKernels, p: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor | None:
    """p (C, R, N), tokens (C, N, D) -> p[c] tokens[c] (C, R, D) through the kernel, or None (bmm)."""
    if not folds(kernels, tokens):
        return None
    return torch.ops.openblip.context_mix(p, tokens)
