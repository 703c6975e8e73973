"""Cyclic training: the global model visits the markets in turn (name order) within a round.

Each market continues boosting from the model as the previous market left it and sends back its k new trees;
the centre appends them at weight 1, signs and posts the result (a *visit model*,
``round-NNN/visits/after-VV.json``), and the next market starts from it. After a round the model holds
``markets x k`` new trees, each fitted to the residuals of everything before it. A market whose update is
rejected is skipped: the next market starts from the last good visit model.
"""

from __future__ import annotations

from fedpipe.aggregation import TreeUpdate, aggregate_bagging


def append_trees(global_doc: dict | None, update: TreeUpdate) -> dict:
    """The global model with one market's new trees appended unchanged.

    Bagging's append with a single update: its row share is 1, so its leaves keep their values.
    """
    return aggregate_bagging(global_doc, [update])


def visit_kind(visits: int) -> str:
    """What a visit model's signature says it is: never taken for a round's global model or for another visit."""
    return f"cyclic-visit-{visits:02d}"


def append_round(global_doc: dict | None, updates: list[TreeUpdate]) -> dict:
    """The round's model: every update appended in visiting order, as the visits built it."""
    if not updates:
        raise ValueError("no updates to aggregate")
    doc = global_doc
    order = visiting_order([u.market for u in updates])
    for update in sorted(updates, key=lambda u: order.index(u.market)):
        doc = append_trees(doc, update)
    return doc


def visiting_order(markets: list[str]) -> list[str]:
    """Markets in the order the model visits them: by name, so a run is reproducible."""
    return sorted(markets)
