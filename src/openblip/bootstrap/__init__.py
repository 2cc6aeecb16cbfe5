"""CapFilt (BLIP section 3.3): clean a web image-text dataset with a captioner and a filter.

    from openblip.bootstrap import BootstrapConfig, bootstrap
    result = bootstrap(BootstrapConfig(out="clean/", filter="itm/", captioner="cap/"), ["web/"])

See run.py (the entry point), pipeline.py (the local engine), ray_engine.py (Ray Data),
shard.py (per-shard outputs), stats.py and report.py.
"""

from openblip.bootstrap.config import BootstrapConfig, CaptionSettings
from openblip.bootstrap.run import BootstrapResult, RayOptions, bootstrap

__all__ = ["BootstrapConfig", "BootstrapResult", "CaptionSettings", "RayOptions", "bootstrap"]
