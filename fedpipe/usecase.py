"""What a use case provides, and how fedpipe finds one.

A use case is one package under ``usecases/<name>/`` exposing ``USECASE`` (a :class:`UseCase`) plus one
Great Expectations suite ``expectations/<suite>.json``. Flows never import a use case directly; they look it
up by the name in the federation config, so adding a use case touches no flow code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from fedpipe.errors import ConfigError


@dataclass
class MarketData:
    """One market's tables, as loaded inside that market.

    ``train`` is the table the data contract validates (raw columns plus the derived label/target);
    ``test`` is the market's held-out table with the same columns, labelled from ground truth.
    ``sources`` maps each table name to the file it came from, for error messages and lineage.
    """

    train: pd.DataFrame
    test: pd.DataFrame
    sources: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class UseCase:
    name: str
    suite: str  # expectations/<suite>.json
    objective: str  # XGBoost objective, e.g. "binary:logistic"
    label: str  # column of train/test the model learns
    # load(market, location, options) -> MarketData; raises MarketDataError naming market, file, field
    load: Callable[[str, Path, Mapping[str, Any]], MarketData]
    # features(table, options) -> model inputs; same columns, same order, in every market
    features: Callable[[pd.DataFrame, Mapping[str, Any]], pd.DataFrame]
    # business_value(test_table, scores, roi_params) -> {"cost_no_model", "cost_model", "savings", "programme_cost", "roi", ...}
    business_value: Callable[[pd.DataFrame, np.ndarray, Mapping[str, Any]], dict]
    # True: business_value is also called with predict=<callable(table) -> scores of the same model>, to score
    # what-if tables (e.g. other drilling settings); the callable stays inside the market like the rows.
    value_uses_model: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # target(table, options) -> what the model learns; None: the ``label`` column as is (e.g. a capped RUL).
    target_fn: Callable[[pd.DataFrame, Mapping[str, Any]], np.ndarray] | None = None
    # Other learning tasks on the same data, chosen by the federation's ``[usecase] task = "<name>"``: each maps
    # to the fields it replaces, e.g. {"rul": {"label": "rul", "objective": "reg:squarederror", ...}}.
    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # check_options(market, options) -> raises ConfigError naming the option; run on every market's options when
    # the federation file is loaded, so a bad value stops the run before Prefect starts, not in every market.
    check_options: Callable[[str, Mapping[str, Any]], Any] | None = None

    def target(self, table: pd.DataFrame, options: Mapping[str, Any]) -> np.ndarray:
        """The values the model learns for ``table``'s rows."""
        if self.target_fn is not None:
            return np.asarray(self.target_fn(table, options))
        return table[self.label].to_numpy()

    def for_task(self, options: Mapping[str, Any]) -> "UseCase":
        """This use case with the task named by ``options["task"]`` applied (itself when none is named)."""
        task = options.get("task")
        if task is None or task == self.defaults.get("task"):
            return self
        if task not in self.tasks:
            known = ", ".join(sorted({str(self.defaults.get("task", "default")), *self.tasks}))
            raise ConfigError("federation config", "usecase.task", f"use case '{self.name}' has no task "
                              f"'{task}' (known: {known})")
        return replace(self, **self.tasks[task])


def get_usecase(name: str) -> UseCase:
    """Import ``usecases.<name>`` and return its ``USECASE``."""
    try:
        module = importlib.import_module(f"usecases.{name}")
    except ModuleNotFoundError as exc:
        raise ConfigError("federation config", "usecase", f"no use case named '{name}' (usecases/{name}/ not found)") from exc
    return module.USECASE
