"""--cpu-kernels on the inference commands: the choice is made once at load, logged with -v; a
bad setting (flag or $OPENBLIP_CPU_KERNEL) is a usage error naming it."""

from __future__ import annotations

import pytest

from openblip.backends import cpu


@pytest.mark.parametrize("setting", ["off", "on"])
def test_choice_is_shown_with_verbose(cli, models, images, setting: str) -> None:
    if setting == "on" and cpu.available() is not None:
        pytest.skip(f"the CPU kernels cannot run here: {cpu.available()}")
    r = cli("-v", "caption", images[0], "--model", models["full"], "--max-length", "8", "--cpu-kernels", setting)
    assert r.code == 0, r.stderr
    want = "CPU kernels: off: torch ops only" if setting == "off" else "CPU kernels: on: small_linear, blocked_linear"
    assert want in r.stderr
    assert len(r.records) == 1 and "caption" in r.records[0]


def test_environment_variable_and_bad_values(cli, models, images) -> None:
    r = cli("-v", "match", images[0], "--text", "a dog", "--model", models["full"], extra_env={cpu.ENV: "0"})
    assert r.code == 0 and "CPU kernels: off" in r.stderr, r.stderr
    r = cli("match", images[0], "--text", "a dog", "--model", models["full"], extra_env={cpu.ENV: "fast"})
    assert r.code == 2 and "OPENBLIP_CPU_KERNEL='fast'" in r.stderr
    r = cli("match", images[0], "--text", "a dog", "--model", models["full"], "--cpu-kernels", "yes")
    assert r.code == 2 and "--cpu-kernels" in r.stderr and "invalid choice" in r.stderr
