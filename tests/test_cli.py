"""The fedpipe command: help that explains, and errors a user can act on (exit code 2, no traceback)."""

import subprocess
import sys
import types
from pathlib import Path

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


DEMO = Path(__file__).resolve().parents[1] / "federations" / "cmapss.toml"


@pytest.fixture
def no_round_flow(monkeypatch):
    """`fedpipe run` must refuse before it reaches the round flow (and Prefect): a stand-in that fails if called."""
    def federated_training(**_):
        raise AssertionError("the round flow started")

    monkeypatch.setitem(sys.modules, "flows.round", types.SimpleNamespace(federated_training=federated_training))


def test_run_histogram_without_the_federated_plugin_is_one_line_before_prefect(monkeypatch, capsys, no_round_flow):
    import xgboost as xgb

    monkeypatch.setattr(xgb, "build_info", lambda: {"USE_FEDERATED": False})  # fault injection only
    assert main(["run", "--config", str(DEMO), "--strategy", "histogram"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedpipe: error: the 'histogram' strategy needs xgboost built with the federated plugin")
    assert len(err.strip().splitlines()) == 1


def test_run_strategy_override_without_base_score_is_refused_before_prefect(tmp_path, capsys, no_round_flow):
    config = tmp_path / "fed.toml"  # histogram fits one intercept over the collective; bagging needs it agreed
    config.write_text(DEMO.read_text().replace('strategy = "bagging"', 'strategy = "histogram"')
                      .replace("base_score = 0.5", ""))
    assert main(["run", "--config", str(config), "--strategy", "bagging"]) == 2
    err = capsys.readouterr().err
    assert f"{config}: field 'model.base_score': strategy 'bagging' needs a base_score" in err
    assert len(err.strip().splitlines()) == 1


def test_run_cyclic_with_holdout_screening_is_refused_before_prefect(tmp_path, capsys, no_round_flow):
    config = tmp_path / "fed.toml"
    config.write_text(DEMO.read_text() + "\n[screening]\nholdout_check = true\n")
    assert main(["run", "--config", str(config), "--strategy", "cyclic"]) == 2
    assert "strategy 'cyclic' cannot be combined with [screening] holdout_check" in capsys.readouterr().err


def test_resuming_a_run_that_is_not_there_is_refused_before_prefect(capsys, no_round_flow):
    assert main(["run", "--config", str(DEMO), "--resume", "no-such-run"]) == 2
    err = capsys.readouterr().err
    assert "no run 'no-such-run' to resume" in err and len(err.strip().splitlines()) == 1
