"""Fault injection for crash tests: make the process die with SIGKILL at a named point of a round.

Set ``FEDPIPE_CRASH_AT=<point>:<round>`` (e.g. ``after-aggregate:2``) and the process kills itself, without
cleanup, exactly there, as ``kill -9`` or a power cut would. Unset (the normal case) it does nothing. The points,
in the order a round reaches them:

- ``after-updates``: markets have sealed their updates, the centre has opened none
- ``after-aggregate``: the next global model exists in memory only
- ``after-model-saved``: the model file is written, not yet posted to the exchange
- ``after-model-published``: the model is in the exchange, the round is not recorded
- ``mid-record``: metrics.parquet and roi.parquet are written, rounds.json is not
"""

from __future__ import annotations

import os
import signal

ENV = "FEDPIPE_CRASH_AT"
POINTS = ("after-updates", "after-aggregate", "after-model-saved", "after-model-published", "mid-record")


def crash_point(point: str, round_: int) -> None:
    """SIGKILL this process if ``FEDPIPE_CRASH_AT`` names ``point`` and ``round_``."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, at_round = wanted.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}={wanted!r}: unknown point {name!r}; expected one of {', '.join(POINTS)}")
    if name == point and (not at_round or int(at_round) == round_):
        os.kill(os.getpid(), signal.SIGKILL)
