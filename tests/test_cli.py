"""The fedpipe command: help that explains, and errors a user can act on (exit code 2, no traceback)."""

import subprocess
import sys

import pytest

from fedpipe.cli import build_parser, main
from fedpipe.commands import COMMANDS


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert len(capsys.readouterr().out.splitlines()) > 3


def test_bad_config_is_a_clear_error_not_a_traceback(tmp_path):
    config = tmp_path / "fed.toml"
    config.write_text('[federation]\nname = "x"\nusecase = "predictive_maintenance"\nrounds = "five"\n'
                      '[markets.A]\ndata = "a"\n')
    done = subprocess.run([sys.executable, "-m", "fedpipe.cli", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "fed.toml: field 'rounds'" in done.stderr and "Traceback" not in done.stderr
