"""Cyclic training: the global model visits the markets in turn (name order) within a round.

Each market continues boosting from the model as the previous market left it and sends back its k new trees;
the centre appends them at weight 1 before the next market trains. After a round the model holds
``markets x k`` new trees, each fitted to the residuals of everything before it.
"""

from __future__ import annotations

import copy

from fedpipe.aggregation import TreeUpdate, _iterations, _model, check_compatible


def append_trees(global_doc: dict | None, update: TreeUpdate) -> dict:
    """The global model with one market's new trees appended unchanged (weight 1)."""
    if global_doc is None:
        result = copy.deepcopy(update.model)
        model = _model(result)
        model["trees"], model["tree_info"], model["iteration_indptr"] = [], [], [0]
    else:
        result = copy.deepcopy(global_doc)
        model = _model(result)
    check_compatible(result, update)
    for trees, groups in _iterations(_model(update.model)):
        for tree, group in zip(trees, groups):
            tree = copy.deepcopy(tree)
            tree["id"] = len(model["trees"])
            model["trees"].append(tree)
            model["tree_info"].append(group)
        model["iteration_indptr"].append(len(model["trees"]))
    model["gbtree_model_param"]["num_trees"] = str(len(model["trees"]))
    return result


def visiting_order(markets: list[str]) -> list[str]:
    """Markets in the order the model visits them: by name, so a run is reproducible."""
    return sorted(markets)
