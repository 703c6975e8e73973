"""fedpipe.config: the demo federation loads, and every bad field is a ConfigError naming file and field."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from fedpipe import keys
from fedpipe.config import load_federation
from fedpipe.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "federations" / "cmapss.toml"

BASE = {
    "federation": {"name": "t", "usecase": "predictive_maintenance", "quorum": 2},
    "model": {"base_score": 0.5},  # tree strategies need it (test_tree_strategy_needs_an_agreed_base_score)
    "markets": {"A": {"data": "data/A"}, "B": {"data": "data/B"}},
}


def _toml(doc: dict) -> str:
    """A tiny TOML writer for the shapes used here: tables of scalars, nested tables as dotted headers."""
    lines: list[str] = []
    key = lambda k: k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)  # noqa: E731

    def table(name: str, body: dict) -> None:
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in body.items() if not isinstance(v, dict))
        for k, v in body.items():
            if isinstance(v, dict):
                table(f"{name}.{key(k)}", v)

    for name, body in doc.items():
        table(name, body)
    return "\n".join(lines) + "\n"


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "fed.toml"
    path.write_text(_toml(doc), encoding="utf-8")
    return path


def _bad(mutate) -> dict:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    return doc


# --- the demo federation ------------------------------------------------------------------------------------


def test_demo_federation_loads():
    fed = load_federation(DEMO)
    assert list(fed.markets) == ["FD001", "FD002", "FD003", "FD004"]
    assert fed.markets["FD004"].subsample == 0.2
    assert {m.subsample for name, m in fed.markets.items() if name != "FD004"} == {1.0}
    for name, market in fed.markets.items():
        assert market.data.is_absolute() and market.data.is_dir(), name
        assert market.data == REPO / "usecases" / "predictive_maintenance" / "data" / name
        assert (market.data / "train.parquet").is_file()
    assert fed.quorum == 3 and fed.trees_per_round == 10 and fed.rounds == 5
    assert fed.source == DEMO
    assert fed.xgb_params()["base_score"] == 0.5  # [model] reaches XGBoost
    assert fed.usecase_options == {"horizon": 30}


def test_relative_market_paths_are_taken_from_the_config_folder(tmp_path, monkeypatch):
    (tmp_path / "data" / "A").mkdir(parents=True)
    path = _write(tmp_path, BASE)
    monkeypatch.chdir(REPO)  # not the config's folder
    fed = load_federation(path)
    assert fed.markets["A"].data == tmp_path / "data" / "A"


# --- bad configs --------------------------------------------------------------------------------------------

BAD = {
    # id: (document, field reported, words of the problem)
    "unknown section": (_bad(lambda d: d.update(extra={"x": 1})), "extra", "unknown section"),
    "unknown federation field": (_bad(lambda d: d["federation"].update(roundz=3)), "roundz", "Extra inputs"),
    "unknown task": (_bad(lambda d: d.update(usecase={"task": "remaining_life"})), "usecase.task",
                     "has no task 'remaining_life' (known: "),
    "unknown market field": (_bad(lambda d: d["markets"]["A"].update(subsampel=0.5)), "markets.A.subsampel",
                             "Extra inputs"),
    "unknown roi field": (_bad(lambda d: d.update(roi={"treshold": 0.4})), "roi.treshold", "unknown ROI parameter"),
    "rounds 0": (_bad(lambda d: d["federation"].update(rounds=0)), "rounds", "greater than or equal to 1"),
    "negative trees_per_round": (_bad(lambda d: d["federation"].update(trees_per_round=-5)), "trees_per_round",
                                 "greater than or equal to 1"),
    "subsample 0": (_bad(lambda d: d["markets"]["B"].update(subsample=0)), "markets.B.subsample",
                    "greater than 0"),
    "subsample 1.5": (_bad(lambda d: d["markets"]["A"].update(subsample=1.5)), "markets.A.subsample",
                      "less than or equal to 1"),
    "missing markets": (_bad(lambda d: d.pop("markets")), "markets", "at least one market"),
    "market without data": (_bad(lambda d: d["markets"]["A"].pop("data")), "markets.A.data", "Field required"),
    "market named aggregator": (_bad(lambda d: d["markets"].update(aggregator={"data": "x"})), "markets",
                                "'aggregator'"),
    "bad strategy": (_bad(lambda d: d["federation"].update(strategy="gossip")), "strategy", "'bagging'"),
    "roi threshold 1.0": (_bad(lambda d: d.update(roi={"threshold": 1.0})), "roi.threshold", "less than 1"),
    "missing name": (_bad(lambda d: d["federation"].pop("name")), "name", "Field required"),
}


@pytest.mark.parametrize("doc, field, problem", BAD.values(), ids=BAD.keys())
def test_bad_config_names_file_and_field(tmp_path, doc, field, problem):
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as info:
        load_federation(path)
    err = info.value
    assert err.field == field
    assert problem in err.problem
    assert err.file == str(path.resolve())
    assert str(path.resolve()) in str(err) and f"field '{field}'" in str(err)


@pytest.mark.parametrize("strategy", [None, "bagging", "cyclic"])
def test_tree_strategy_needs_an_agreed_base_score(tmp_path, strategy):
    """Without it each market's intercept would be its own label mean, sent with its trees."""
    doc = _bad(lambda d: d.pop("model"))
    if strategy:
        doc["federation"]["strategy"] = strategy
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as info:
        load_federation(path)
    assert info.value.field == "model.base_score" and info.value.file == str(path.resolve())
    assert f"strategy '{strategy or 'bagging'}'" in str(info.value) and "label mean" in str(info.value)


@pytest.mark.parametrize("strategy", ["histogram", "fedavg"])
def test_histogram_and_fedavg_need_no_base_score(tmp_path, strategy):
    """Histogram fits one intercept over the collective (every worker the pooled mean); fedavg is linear."""
    doc = _bad(lambda d: d.pop("model"))
    doc["federation"]["strategy"] = strategy
    assert "base_score" not in load_federation(_write(tmp_path, doc)).model


def test_strategy_override_to_a_tree_strategy_needs_a_base_score(tmp_path):
    """`fedpipe run --strategy bagging` on a histogram federation without base_score is refused before training."""
    from fedpipe.strategies import check_strategy

    doc = _bad(lambda d: d.pop("model"))
    doc["federation"]["strategy"] = "histogram"
    fed = load_federation(_write(tmp_path, doc))
    with pytest.raises(ConfigError, match="field 'model.base_score': strategy 'bagging'"):
        check_strategy("bagging", fed)
    assert check_strategy("fedavg", fed) == "fedavg"


def test_quorum_larger_than_markets_is_rejected(tmp_path):
    path = _write(tmp_path, _bad(lambda d: d["federation"].update(quorum=3)))
    with pytest.raises(ConfigError, match=r"quorum 3 is more than the 2 markets") as info:
        load_federation(path)
    assert str(path.resolve()) in str(info.value)


def test_quorum_larger_than_markets_names_the_quorum_field(tmp_path):
    path = _write(tmp_path, _bad(lambda d: d["federation"].update(quorum=3)))
    with pytest.raises(ConfigError) as info:
        load_federation(path)
    assert info.value.field in ("quorum", "federation.quorum")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="no such file") as info:
        load_federation(path)
    assert info.value.field == "(file)" and str(path) in str(info.value)


def test_invalid_toml(tmp_path):
    path = tmp_path / "fed.toml"
    path.write_text('[federation]\nname = "t\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_federation(path)
    assert info.value.field == "(syntax)" and str(path) in str(info.value)
    assert "line 2" in str(info.value)  # tomllib's position survives, so the user can find the typo


@pytest.mark.parametrize("name", ["-east", "Zürich"])
def test_market_names_config_accepts_are_names_keys_accept(tmp_path, name):
    doc = _bad(lambda d: d["markets"].update({name: {"data": "x"}}))
    try:
        load_federation(_write(tmp_path, doc))
    except ConfigError:
        return  # rejected on load: fine
    keys.generate_identity(tmp_path / "keys", name)  # accepted on load: its identity must then be creatable


def test_unknown_usecase_is_rejected_on_load(tmp_path):
    path = _write(tmp_path, _bad(lambda d: d["federation"].update(usecase="predictive_maintenanse")))
    with pytest.raises(ConfigError) as info:
        load_federation(path)
    assert info.value.field in ("usecase", "federation.usecase")


def test_a_use_case_may_add_its_own_roi_parameters():
    """[roi] keys beyond the common ones are accepted when the use case's defaults know them."""
    volve = load_federation(Path(__file__).resolve().parents[1] / "federations" / "volve.toml")
    assert volve.roi.model_dump()["rig_spread_rate_per_day"] == 350000



def test_rul_task_is_chosen_in_the_usecase_table(tmp_path):
    """``[usecase] task = "rul"`` (and its rul_cap) load, and the use case becomes the capped-RUL regression."""
    from fedpipe.usecase import get_usecase

    fed = load_federation(_write(tmp_path, _bad(lambda d: d.update(usecase={"task": "rul", "rul_cap": 100}))))
    usecase = get_usecase(fed.usecase).for_task(fed.usecase_options)
    assert usecase.objective == "reg:squarederror" and fed.usecase_options["rul_cap"] == 100


def test_deployed_mode_fields(tmp_path):
    """cadence is checked as Prefect will schedule it; dispatch is one of the two ways to reach the markets."""
    doc = copy.deepcopy(BASE)
    doc["federation"].update(cadence="0 3 * * 1", exchange="s3://council/exchange", dispatch="deployments")
    (tmp_path / "f.toml").write_text(_toml(doc))
    fed = load_federation(tmp_path / "f.toml")
    assert (fed.cadence, fed.exchange, fed.dispatch) == ("0 3 * * 1", "s3://council/exchange", "deployments")
    for field, value in (("cadence", "every monday"), ("dispatch", "ssh")):
        bad = copy.deepcopy(BASE)
        bad["federation"][field] = value
        (tmp_path / "bad.toml").write_text(_toml(bad))
        with pytest.raises(ConfigError, match=f"field 'federation.{field}'|field '{field}'"):
            load_federation(tmp_path / "bad.toml")


def test_histogram_host_is_loopback_unless_configured(tmp_path):
    assert load_federation(DEMO).histogram_host == "127.0.0.1"
    doc = copy.deepcopy(BASE)
    doc["federation"].update(strategy="histogram", histogram_host="centre.council.internal")
    (tmp_path / "f.toml").write_text(_toml(doc))
    assert load_federation(tmp_path / "f.toml").histogram_host == "centre.council.internal"


@pytest.mark.parametrize("usecase, option, value", [("predictive_maintenance", "horizon", -3),
                                                     ("drilling_efficiency", "holdout", 0.9)])
def test_a_bad_usecase_option_is_refused_on_load_not_in_every_market(tmp_path, usecase, option, value):
    doc = copy.deepcopy(BASE)
    doc["federation"]["usecase"] = usecase
    doc["usecase"] = {option: value}
    (tmp_path / "f.toml").write_text(_toml(doc))
    with pytest.raises(ConfigError, match=rf"field 'usecase.{option}': must be"):
        load_federation(tmp_path / "f.toml")
