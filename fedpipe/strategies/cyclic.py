"""Cyclic training: the global model visits the markets in turn (name order) within a round.

Each market continues boosting from the model as the previous market left it and sends back its k new trees;
the centre appends them at weight 1 before the next market trains. After a round the model holds
``markets x k`` new trees, each fitted to the residuals of everything before it.
"""

from __future__ import annotations

from fedpipe.aggregation import TreeUpdate, aggregate_bagging


def append_trees(global_doc: dict | None, update: TreeUpdate) -> dict:
    """The global model with one market's new trees appended unchanged.

    Bagging's append with a single update: its row share is 1, so its leaves keep their values.
    """
    return aggregate_bagging(global_doc, [update])


def visiting_order(markets: list[str]) -> list[str]:
    """Markets in the order the model visits them: by name, so a run is reproducible."""
    return sorted(markets)
