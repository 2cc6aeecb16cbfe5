"""The command line's parser: every subcommand module is imported, and one that fails to import
stops the CLI with that error instead of silently vanishing from it."""

from __future__ import annotations

import pytest

import openblip.cli as cli


@pytest.mark.parametrize("module", cli.COMMAND_MODULES)
def test_every_subcommand_is_registered(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = module.rsplit(".", 1)[1].removesuffix("_cmd")
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args([command, "--help"])
    assert done.value.code == 0 and f"openblip {command}" in capsys.readouterr().out


def test_a_subcommand_that_fails_to_import_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "openblip.cli.no_such_cmd"))
    with pytest.raises(ModuleNotFoundError, match="no_such_cmd"):
        cli.build_parser()
