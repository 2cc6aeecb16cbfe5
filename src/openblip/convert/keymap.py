"""Declarative key maps between our parameter names and a foreign checkpoint's, and the one
function that applies them strictly.

A `KeyMap` is data: `renames` maps our name patterns to theirs (`{i}` stands for a layer
index; a pattern names a parameter or a module prefix, the rest of the key is carried over),
`drops` names every kind of foreign key that is deliberately ignored and why, `tied` lists
foreign keys that duplicate another foreign key (checked equal, then dropped), and `fills`
lists our parameters the format does not store at all, with the value used instead.

`to_ours` accounts for every key: anything unmapped on either side is an error that names the
keys (the original `load_checkpoint` instead deletes mismatching keys and loads with
strict=False, silently keeping random weights). Resizing the ViT position embeddings to the
requested grid is the one adaptation, as in the original `interpolate_pos_embed`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from openblip.model.vision import resize_pos_embed

POS_EMBED = "visual_encoder.pos_embed"
_SHOWN = 12  # keys listed in an error message before "... and N more"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model: names the offending keys, shapes or file."""


@dataclass(frozen=True)
class KeyMap:
    format: str  # human name of the foreign format, used in messages
    renames: Mapping[str, str]  # our name pattern -> their name pattern; "{i}" = layer index
    drops: Mapping[str, str] = field(default_factory=dict)  # regex (full match) on their keys -> why ignored
    tied: Mapping[str, str] = field(default_factory=dict)  # their duplicate key -> their key it must equal
    fills: Mapping[str, float] = field(default_factory=dict)  # our keys the format lacks -> value used
    # our keys some files of the format lack -> value used when absent (used from the file when there)
    defaults: Mapping[str, tuple[float, str]] = field(default_factory=dict)  # -> (value, why it may be absent)

    @functools.cached_property
    def _compiled(self) -> list[tuple[re.Pattern[str], str]]:
        rules = []
        for ours, theirs in self.renames.items():
            body = re.escape(ours).replace(re.escape("{i}"), r"(?P<i>\d+)")
            rules.append((re.compile(f"{body}(?P<rest>\\..+)?"), theirs))
        return rules

    @functools.cached_property
    def _drop_patterns(self) -> list[tuple[re.Pattern[str], str]]:
        return [(re.compile(pattern), why) for pattern, why in self.drops.items()]

    def theirs(self, ours: str) -> str:
        """Their name for our parameter `ours`."""
        for pattern, template in self._compiled:
            m = pattern.fullmatch(ours)
            if m:
                name = template.replace("{i}", m.group("i")) if m.groupdict().get("i") else template
                return name + (m.group("rest") or "")
        raise KeyError(f"no {self.format} name for our parameter {ours!r}")

    def drop_reason(self, theirs: str) -> str | None:
        for pattern, why in self._drop_patterns:
            if pattern.fullmatch(theirs):
                return why
        return None


@dataclass(frozen=True)
class ModelKeys:
    """A model's parameters: each distinct tensor once under its canonical (first) name, and
    the other names of shared tensors (the pre-training encoder/decoder sharing)."""

    shapes: dict[str, tuple[int, ...]]  # canonical name -> shape
    aliases: dict[str, str]  # alias name -> canonical name

    @classmethod
    def of(cls, model: nn.Module) -> ModelKeys:
        shapes: dict[str, tuple[int, ...]] = {}
        aliases: dict[str, str] = {}
        first: dict[int, str] = {}
        named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
        persistent = set(model.state_dict(keep_vars=True))
        for name, tensor in named:
            if name not in persistent:
                continue
            if id(tensor) in first:
                aliases[name] = first[id(tensor)]
            else:
                first[id(tensor)] = name
                shapes[name] = tuple(tensor.shape)
        return cls(shapes, aliases)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f", ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def to_ours(
    foreign: Mapping[str, torch.Tensor], keys: ModelKeys, kmap: KeyMap, source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a foreign state dict to our canonical names, accounting for every key.

    Returns (state dict, notes on what was dropped, filled or adapted). Raises CheckpointError
    naming missing and unexpected keys, unequal duplicates, or mismatched shapes.
    """
    ours: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    notes: list[str] = []
    for name in keys.shapes:
        if name in kmap.fills:  # the format has no such tensor
            ours[name] = torch.tensor(kmap.fills[name]).reshape(keys.shapes[name])
            notes.append(f"{name} is not stored in the {kmap.format} format; set to {kmap.fills[name]}")
            continue
        theirs = kmap.theirs(name)
        if theirs in foreign:
            ours[name] = foreign[theirs]
            used.add(theirs)
        elif name in kmap.defaults:
            value, reason = kmap.defaults[name]
            ours[name] = torch.tensor(value).reshape(keys.shapes[name])
            notes.append(f"{theirs} is absent ({reason}); set to {value}")
        else:
            missing.append(f"{theirs} (for {name})")
    unequal: list[str] = []
    for alias, canonical in keys.aliases.items():  # shared tensors: every copy must agree
        theirs = kmap.theirs(alias)
        if theirs not in foreign:
            missing.append(f"{theirs} (for shared {alias})")
            continue
        used.add(theirs)
        if canonical in ours and not _same(foreign[theirs], ours[canonical]):
            unequal.append(f"{theirs} != {kmap.theirs(canonical)}")
    dropped: dict[str, int] = {}
    unexpected: list[str] = []
    for theirs in foreign:
        if theirs in used:
            continue
        if theirs in kmap.tied:
            twin = kmap.tied[theirs]
            if twin in foreign and not _same(foreign[theirs], foreign[twin]):
                unequal.append(f"{theirs} != {twin}")
            dropped["tied duplicate"] = dropped.get("tied duplicate", 0) + 1
            continue
        why = kmap.drop_reason(theirs)
        if why is None:
            unexpected.append(theirs)
        else:
            dropped[why] = dropped.get(why, 0) + 1
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if unequal:
        problems.append(f"tensors that must be equal differ: {_listing(unequal)}")
    if problems:
        raise CheckpointError(f"{source}: {kmap.format} checkpoint does not fit the model; " + "; ".join(problems))
    notes.extend(f"dropped {n} key(s): {why}" for why, n in sorted(dropped.items()))
    return match_shapes(ours, keys, source, lambda k: k if k in kmap.fills else kmap.theirs(k), notes), notes


def match_shapes(
    state: Mapping[str, torch.Tensor],
    keys: ModelKeys,
    source: str,
    their_name: Callable[[str], str] | None = None,
    notes: list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Check `state` has exactly the model's canonical keys with the model's shapes.

    `visual_encoder.pos_embed` with a different (square) number of positions is resized
    bicubically to the model's grid; everything else must match exactly.
    """
    name_of = their_name or (lambda name: name)
    missing = [k for k in keys.shapes if k not in state]
    unexpected = [k for k in state if k not in keys.shapes]
    if missing or unexpected:
        parts = [f"missing keys: {_listing(missing)}"] if missing else []
        parts += [f"unexpected keys: {_listing(unexpected)}"] if unexpected else []
        raise CheckpointError(f"{source}: checkpoint does not fit the model; " + "; ".join(parts))
    out: dict[str, torch.Tensor] = {}
    for name, want in keys.shapes.items():
        tensor = state[name]
        got = tuple(tensor.shape)
        if got != want and name == POS_EMBED and len(got) == 3 and got[0] == 1 and got[2] == want[2]:
            grid = _grid(want[1] - 1, f"{source}: model {POS_EMBED}")
            try:
                tensor = resize_pos_embed(tensor, grid)
            except ValueError as e:
                raise CheckpointError(f"{source}: {name_of(name)}: {e}") from e
            if notes is not None:
                notes.append(f"{POS_EMBED} resized from {got[1] - 1} to {want[1] - 1} patch positions")
        elif got != want:
            raise CheckpointError(f"{source}: {name_of(name)} has shape {got} but the model's {name} needs {want}")
        out[name] = tensor
    return out


def _grid(n: int, what: str) -> int:
    g = math.isqrt(n)
    if g * g != n:
        raise CheckpointError(f"{what}: {n} patch positions is not a square grid")
    return g


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
