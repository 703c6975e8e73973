"""Tree aggregation for federated XGBoost ("bagging" of boosted trees).

Each round, every market continues boosting from the current global model and sends back only the k trees it
added. The centre appends every market's trees to the global model with their leaf values scaled by the
market's share of the round's training rows, so the round's step is the sample-weighted average of the markets'
steps:  F_r(x) = F_{r-1}(x) + sum_m (n_m / n) * f_m(x).

Everything here works on XGBoost's JSON model document, so the centre never needs a DMatrix, let alone rows.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Iterable

import xgboost as xgb

# Per-node statistics that describe a market's local data (hessian sums are row counts for squared error,
# gain values leak how separable the data is). Prediction never reads them, so they are zeroed before sealing.
# Internal nodes' base_weights (-G/(H+lambda) of the rows reaching them; the root's gives away the label mean)
# are zeroed too: prediction reads only the leaves' values (see _mask).
LOCAL_STATISTICS = ("sum_hessian", "loss_changes")
BASE_SCORE_TOLERANCE = 1e-6  # relative: base_score travels as float32 text


@dataclass(frozen=True)
class TreeUpdate:
    """One market's contribution to a round: the new trees and how many training rows produced them."""

    market: str
    model: dict  # XGBoost JSON document holding only the new trees
    n_rows: int


def _model(doc: dict) -> dict:
    return doc["learner"]["gradient_booster"]["model"]


def tree_count(doc: dict) -> int:
    return len(_model(doc)["trees"])


def iteration_count(doc: dict) -> int:
    """Boosting iterations (a multi-class or parallel-tree iteration holds several trees)."""
    return len(_model(doc)["iteration_indptr"]) - 1


def load_model_doc(raw: bytes) -> dict:
    return json.loads(raw)


def dump_model_doc(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def to_booster(doc: dict) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray(dump_model_doc(doc)))
    return booster


def new_trees(booster: xgb.Booster, start_iteration: int) -> dict:
    """The trees a market added after ``start_iteration``, with local statistics masked."""
    doc = json.loads(booster[start_iteration:].save_raw("json"))
    for tree in _model(doc)["trees"]:
        _mask(tree)
    return doc


def _mask(tree: dict) -> None:
    """Zero a tree's local statistics and its internal nodes' base weights, in place; leaves keep theirs."""
    for key in LOCAL_STATISTICS:
        tree[key] = [0.0] * len(tree[key])
    weights = tree["base_weights"]
    width = len(weights) // max(len(tree["left_children"]), 1)  # a multi-target tree holds one vector per node
    for node, left in enumerate(tree["left_children"]):
        if left != -1:
            weights[node * width:(node + 1) * width] = [0.0] * width


def _scaled(tree: dict, weight: float) -> dict:
    tree = copy.deepcopy(tree)
    leaves = [i for i, left in enumerate(tree["left_children"]) if left == -1]
    for i in leaves:
        # A leaf's value lives in split_conditions; base_weights mirrors it and is kept consistent.
        tree["split_conditions"][i] *= weight
    tree["base_weights"] = [w * weight for w in tree["base_weights"]]
    return tree


def _iterations(model: dict) -> Iterable[tuple[list[dict], list[int]]]:
    """Yield (trees, groups) per boosting iteration; multi-class iterations hold one tree per class."""
    indptr = model["iteration_indptr"]
    for start, stop in zip(indptr[:-1], indptr[1:]):
        yield model["trees"][start:stop], model["tree_info"][start:stop]


def base_score(doc: dict) -> list[float]:
    """The model's intercept(s): XGBoost writes "5E-1" (older versions), "[5E-1]" or "[5E-1,5E-1,5E-1]"."""
    text = str(doc["learner"]["learner_model_param"]["base_score"]).strip().strip("[]")
    return [float(v) for v in text.split(",")]


def check_compatible(base: dict, update: TreeUpdate) -> None:
    """Refuse an update whose trees cannot belong to this global model."""
    want, got = base["learner"], update.model["learner"]
    for key in ("num_feature", "num_class", "num_target"):
        if want["learner_model_param"][key] != got["learner_model_param"][key]:
            raise ValueError(
                f"market '{update.market}': update has {key}={got['learner_model_param'][key]}, "
                f"global model has {want['learner_model_param'][key]}"
            )
    # Trees are steps from the intercept they were grown on: summing trees from different intercepts is wrong.
    ours, theirs = base_score(base), base_score(update.model)
    if len(ours) != len(theirs) or not all(math.isclose(a, b, rel_tol=BASE_SCORE_TOLERANCE, abs_tol=1e-12)
                                           for a, b in zip(ours, theirs)):
        shown = lambda values: ", ".join(f"{v:.7g}" for v in values)  # noqa: E731
        raise ValueError(f"market '{update.market}': update has base_score {shown(theirs)}, global model has "
                         f"{shown(ours)} (every market must train from the federation's [model] base_score)")
    if want.get("feature_names") and got.get("feature_names") != want["feature_names"]:
        raise ValueError(f"market '{update.market}': update's feature names differ from the global model's")
    for tree in _model(update.model)["trees"]:
        values = tree["split_conditions"] + tree["base_weights"]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"market '{update.market}': update has a NaN or infinite leaf value")


def aggregate_bagging(global_doc: dict | None, updates: list[TreeUpdate]) -> dict:
    """Append every market's new trees to the global model, each scaled by its share of rows.

    ``global_doc`` is None in the first round: the first update (by market name) lends its learner header
    (objective, base score, feature names), which every market shares because it comes from the same config.
    Markets are applied in name order so the result does not depend on arrival order.
    """
    if not updates:
        raise ValueError("no updates to aggregate")
    updates = sorted(updates, key=lambda u: u.market)
    if global_doc is None:
        result = copy.deepcopy(updates[0].model)
        model = _model(result)
        model["trees"], model["tree_info"], model["iteration_indptr"] = [], [], [0]
    else:
        result = copy.deepcopy(global_doc)
        model = _model(result)
    total_rows = sum(u.n_rows for u in updates)
    if total_rows <= 0:
        raise ValueError("updates report no training rows")
    for update in updates:
        check_compatible(result, update)
        weight = update.n_rows / total_rows
        for trees, groups in _iterations(_model(update.model)):
            for tree, group in zip(trees, groups):
                tree = _scaled(tree, weight)
                tree["id"] = len(model["trees"])
                model["trees"].append(tree)
                model["tree_info"].append(group)
            model["iteration_indptr"].append(len(model["trees"]))
    model["gbtree_model_param"]["num_trees"] = str(len(model["trees"]))
    return result
