"""Input checks shared by the metrics: errors that name the offending keys and items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def check_same_keys(predictions: Mapping[Any, object], targets: Mapping[Any, object], targets_name: str) -> None:
    """Both mappings must hold the same non-empty set of keys: a prediction without targets cannot be
    scored, and targets without a prediction would silently make the score cover another subset."""
    missing = [k for k in predictions if k not in targets]
    extra = [k for k in targets if k not in predictions]
    if missing or extra:
        raise ValueError(
            f"predictions and {targets_name} must have the same keys; "
            f"without {targets_name}: {missing[:5]!r}, without a prediction: {extra[:5]!r}"
        )
    if not predictions:
        raise ValueError("no predictions to score")


def check_strings(values: object, what: str) -> Sequence[str]:
    """``values`` must be a non-empty sequence of str (a bare str is refused: it is a sequence of
    characters, almost always a missing pair of brackets)."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(f"{what} must be a sequence of str, got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError(f"{what} are empty")
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{what}: item {i} must be a str, got {type(value).__name__}")
    return values
