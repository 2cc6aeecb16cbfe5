"""`openblip reproduce`: the paper's CapFilt ablation (BLIP Table 1, section 4.2) on the synthetic
scenes, with the same compute budget for every arm.

    from openblip.reproduce import QUICK, reproduce
    result = reproduce(QUICK, "repro/", seeds=[0, 1, 2])

Layout: presets.py (the quick and full settings), arms.py (the arms and each one's training set),
stages.py (benchmark, training, bootstrap, evaluation), steps.py (resumable steps), run.py (the loop
per seed), table.py (table.json and table.md).
"""

from openblip.reproduce.arms import ALL_ARMS, Arm, BootstrapRun
from openblip.reproduce.presets import FULL, PRESETS, QUICK, SMALL_MODEL, Budget, Preset
from openblip.reproduce.run import ReproduceResult, reproduce

__all__ = [
    "ALL_ARMS",
    "FULL",
    "PRESETS",
    "QUICK",
    "SMALL_MODEL",
    "Arm",
    "BootstrapRun",
    "Budget",
    "Preset",
    "ReproduceResult",
    "reproduce",
]
