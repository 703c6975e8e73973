"""Secure aggregation in a round: the centre learns only the federation's evaluation totals.

With ``[federation] secure_aggregation = true`` the evaluate step goes like this (fedpipe.secagg does the maths):

1. the centre publishes the round's **roster** (the markets asked to evaluate, with the X25519 keys it knows them
   by), signed by the aggregator (``sealing.sign_model(kind="secagg-roster")``);
2. each market checks the roster's signature, flattens its sufficient statistics (:func:`flatten`: ROI cost
   figures, confusion counts, a score histogram per class, row counts, for the federated and the local-only
   model) into one vector, masks it pairwise with every other roster market (:func:`mask_evaluation`) and seals
   only the masked vector to the aggregator. Its own per-market figures stay in its state folder
   (``<state>/<federation>/secure-aggregation/round-NNN.json``);
3. the centre opens the envelopes; if a roster market's vector is missing (it dropped after masking, or before),
   it publishes the signed list of **survivors**, and each survivor reveals, sealed to the aggregator, its pairwise
   seed with each missing market (:func:`reveal`), which removes those masks from the sum. A market whose envelope
   reached the centre is never "missing", even if its vector is then rejected: the survivors' seeds with it would
   unmask the vector the centre holds (Bonawitz et al.). Such a round's sum is not unmasked at all
   (:func:`withhold_sum`), and :func:`publish_survivors` refuses to ask for those seeds (:func:`reveal_request`);
4. the centre unmasks the sum (:func:`unmask_totals`) and records only ``market = "federation"`` rows in
   metrics.parquet and roi.parquet (:func:`totals_tables`). Per-market rows are absent: that is the point.

Fewer than three markets is refused (config check, and secagg itself): with two, each could deduce the other's part.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fedpipe import keys, sealing, secagg, trust
from fedpipe.federation_metrics import BINS, federation_metrics
from fedpipe.roi import ratio
from fedpipe.storage import atomic_write_json

if TYPE_CHECKING:
    from fedpipe.central import Run
    from fedpipe.market import MarketSite

log = logging.getLogger(__name__)

LABEL = "evaluation"  # secagg purpose label: masks for this round's evaluation sums only
MODELS = ("federated", "local_only")
VALUE_KEYS = ("cost_no_model", "cost_model", "savings", "programme_cost")
SCALARS = {"classification": ("n", "tp", "fp", "fn", "tn", "log_loss_sum"),
           "regression": ("n", "sse", "sae", "y_sum", "y_sumsq")}
HISTOGRAMS = {"classification": ("hist_pos", "hist_neg"), "regression": ()}
ROSTER_KIND, SURVIVORS_KIND = "secagg-roster", "secagg-survivors"


# --- the vector layout ---------------------------------------------------------------------------


def layout(kind: str) -> list[tuple[str, str, str, int]]:
    """The fixed order of (model, "value"/"stats", field, length) every market flattens its figures in."""
    if kind not in SCALARS:
        raise ValueError(f"secure aggregation: no layout for statistics of kind {kind!r}")
    fields = []
    for model in MODELS:
        fields += [(model, "value", k, 1) for k in VALUE_KEYS]
        fields += [(model, "stats", k, 1) for k in SCALARS[kind]]
        fields += [(model, "stats", k, BINS) for k in HISTOGRAMS[kind]]
    return fields + [("", "", "train_rows", 1)]


def flatten(evaluation: dict[str, Any]) -> tuple[str, np.ndarray]:
    """(kind, vector) of a market's evaluation (fedpipe.market.evaluate_models) in :func:`layout` order."""
    kind = evaluation["federated"]["stats"]["kind"]
    parts = []
    for model, part, key, size in layout(kind):
        value = evaluation["train_rows"] if key == "train_rows" else evaluation[model][part][key]
        value = np.asarray(value, dtype=np.float64).ravel()
        if value.size != size:
            raise ValueError(f"secure aggregation: {model}.{part}.{key} has {value.size} values, expected {size}")
        parts.append(value)
    return kind, np.concatenate(parts)


def unflatten(kind: str, vector: np.ndarray) -> dict[str, Any]:
    """Inverse of :func:`flatten` for a (summed) vector; counts are rounded back to whole numbers."""
    fields = layout(kind)
    if vector.size != sum(f[3] for f in fields):
        raise secagg.SecAggError(f"summed vector has {vector.size} values, the '{kind}' layout needs "
                                 f"{sum(f[3] for f in fields)}")
    out: dict[str, Any] = {m: {"value": {}, "stats": {"kind": kind}} for m in MODELS}
    at = 0
    for model, part, key, size in fields:
        chunk = vector[at:at + size]
        at += size
        whole = key in ("n", "tp", "fp", "fn", "tn", "train_rows") or key.startswith("hist_")
        chunk = np.rint(chunk) if whole else chunk
        value = chunk.tolist() if size > 1 else (int(chunk[0]) if whole else float(chunk[0]))
        if key == "train_rows":
            out["train_rows"] = value
        else:
            out[model][part][key] = value
    return out


# --- signed documents the aggregator publishes -------------------------------------------------


def _doc_path(exchange, round_: int, name: str) -> str:
    return exchange._path(f"round-{round_:03d}", "secagg", name)


def _named(name: str, label: str) -> str:
    """The evaluation's documents keep their names; another purpose's get it in theirs (roster-weights.json)."""
    return name if label == LABEL else f"{name.split('.')[0]}-{label}.{name.split('.', 1)[1]}"


def reveal_path(exchange, round_: int, market: str, label: str = LABEL) -> str:
    return _doc_path(exchange, round_, _named(f"reveal-{market}.sealed", label))


def _publish_signed(run: Run, round_: int, name: str, kind: str, doc: dict) -> None:
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    aggregator = keys.load_identity(run.federation.keys_dir, "aggregator")
    signature = sealing.sign_model(raw, federation=run.federation.name, round=round_, signer=aggregator, kind=kind)
    path = _doc_path(run.exchange, round_, name)
    run.exchange.put(path, raw)
    run.exchange.put(path + ".sig", signature)


def _fetch_signed(site: MarketSite, round_: int, name: str, kind: str) -> dict:
    path = _doc_path(site.exchange, round_, name)
    if not site.exchange.exists(path):
        raise secagg.SecAggError(f"market '{site.market}': secure aggregation is on but the aggregator published "
                                 f"no {name} for round {round_}")
    from fedpipe.market import fetch_signed

    return json.loads(fetch_signed(site, path, round_=round_, kind=kind))


def publish_roster(run: Run, round_: int, markets: list[str], label: str = LABEL) -> list[str]:
    """Sign and post who masks together this round (for ``label``), with the encryption key the centre trusts."""
    secagg._check_roster(markets, f"round {round_}")  # refuse before any market masks
    senders = trust.senders(run.federation)
    missing = [m for m in markets if m not in senders]
    if missing:
        raise secagg.SecAggError(f"round {round_}: no registered keys for {missing}: they cannot take part in "
                                 "secure aggregation")
    roster = {m: {"enc_public": senders[m][0].enc_public, "sign_public": senders[m][0].sign_public}
              for m in sorted(markets)}
    # A fresh session per roster: a re-run round (resume, retry) masks with new masks, so the centre never holds
    # two vectors under the same masks whose difference would give away the change in one market's figures.
    _publish_signed(run, round_, _named("roster.json", label), ROSTER_KIND,
                    {"round": round_, "label": label, "session": secrets.token_hex(16), "markets": roster})
    return sorted(markets)


def delivered(exchange, round_: int, markets: list[str], label: str = LABEL) -> set[str]:
    """The markets with an envelope in their slot for ``label``'s step (metrics for the evaluation, the update slot
    for fedavg's scaler and weights), opened or not: the centre may hold their masked vectors."""
    slot = exchange.metrics if label == LABEL else exchange.update
    return {m for m in markets if exchange.exists(slot(round_, m))}


def reveal_request(roster: list[str], survivors: list[str], received) -> list[str]:
    """The roster markets whose seeds the survivors are to reveal: those missing from ``survivors``.

    Refuses a survivor outside the roster, and any missing market in ``received`` (its masked vector reached the
    centre): with the survivors' seeds with it, the centre could unmask that vector (Bonawitz et al.: never ask for
    the seeds of a market whose input was received).
    """
    names = sorted(roster)
    alive = sorted(set(survivors))
    stray = sorted(set(alive) - set(names))
    if stray:
        raise secagg.SecAggError(f"survivors {stray} are not in the roster {names}")
    gone = [m for m in names if m not in alive]
    held = sorted(set(gone) & set(received))
    if held:
        raise secagg.SecAggError(
            f"refusing to ask the survivors for their seeds with {held}: the centre received their masked vectors, "
            "and the seeds would unmask them; the secure sum cannot be completed this round")
    return gone


def withhold_sum(roster: list[str], received, vectors: dict[str, np.ndarray],
                 missing: dict[str, str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(vectors to sum, reasons for the roster markets left out). A market in ``received`` whose vector is not
    usable cannot be recovered like a dropout (see :func:`reveal_request`): then nothing is summed, and every
    market's reason says why."""
    held = sorted(m for m in roster if m in received and m not in vectors)
    if not held:
        return vectors, missing
    why = (f"secure sum not unmasked: the centre received masked vectors from {held} but cannot use them, and "
           "may not ask for the survivors' seeds with them (that would unmask them)")
    return {}, {**missing, **{m: why for m in vectors},
                **{m: f"{missing.get(m) or 'left out'}; {why}" for m in held}}


def _published_roster(run: Run, round_: int, label: str) -> list[str]:
    path = _doc_path(run.exchange, round_, _named("roster.json", label))
    if not run.exchange.exists(path):
        raise secagg.SecAggError(f"round {round_}: no {label} roster published; no survivors to name")
    return sorted(json.loads(run.exchange.get(path))["markets"])


def publish_survivors(run: Run, round_: int, survivors: list[str], label: str = LABEL) -> None:
    """Sign and post who is in the sum: each survivor then reveals its seeds with the roster markets not listed.

    Refused if a market left out has an envelope in its slot (:func:`delivered`, :func:`reveal_request`).
    """
    roster = _published_roster(run, round_, label)
    reveal_request(roster, survivors, delivered(run.exchange, round_, roster, label))
    _publish_signed(run, round_, _named("survivors.json", label), SURVIVORS_KIND,
                    {"round": round_, "label": label, "survivors": sorted(survivors)})


# --- market side ---------------------------------------------------------------------------------


def fetch_roster(site: MarketSite, round_: int, label: str = LABEL) -> dict[str, keys.PublicIdentity]:
    """The round's roster, signed by the aggregator; a peer's key must match any key this market registered for it."""
    return fetch_roster_session(site, round_, label)[0]


def fetch_roster_session(site: MarketSite, round_: int,
                         label: str = LABEL) -> tuple[dict[str, keys.PublicIdentity], str]:
    """The roster (see :func:`fetch_roster`) and the mask label of its session (``label:session``)."""
    doc = _fetch_signed(site, round_, _named("roster.json", label), ROSTER_KIND)
    if doc.get("round") != round_ or doc.get("label", LABEL) != label or not isinstance(doc.get("markets"), dict):
        raise secagg.SecAggError(f"market '{site.market}': roster for round {round_} is malformed")
    if site.market not in doc["markets"]:
        raise secagg.SecAggError(f"market '{site.market}' is not in round {round_}'s roster {sorted(doc['markets'])}")
    roster = {}
    for peer, pub in doc["markets"].items():
        try:
            known = trust.trusted_keys(site.federation, peer, keys_dir=site.keys_dir)[0].enc_public
        except keys.KeyFileError:
            known = None  # not registered here: the aggregator vouches for it (SECURITY.md)
        if known is not None and known != pub["enc_public"]:
            raise secagg.SecAggError(f"market '{site.market}': the roster gives '{peer}' a key other than the one "
                                     "registered for it; refusing to mask with it")
        roster[peer] = keys.PublicIdentity(peer, pub["enc_public"], pub["sign_public"])
    session = doc.get("session")
    return roster, f"{label}:{session}" if isinstance(session, str) and session else label


def _own_record(site: MarketSite, round_: int, label: str = LABEL):
    return site.state_dir / "secure-aggregation" / _named(f"round-{round_:03d}.json", label)


def field_names(kind: str) -> list[str]:
    """One name per value of the :func:`layout` vector (``federated.stats.hist_pos[3]``), for error messages."""
    names = []
    for model, part, key, size in layout(kind):
        base = ".".join(p for p in (model, part, key) if p)
        names += [base] if size == 1 else [f"{base}[{i}]" for i in range(size)]
    return names


def mask_evaluation(site: MarketSite, round_: int, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The payload a market seals in secure mode: its evaluation sums, masked. Keeps its own figures locally."""
    kind, vector = flatten(evaluation)
    return mask_values(site, round_, vector, kind=kind, label=LABEL, fields=field_names(kind), evaluation=evaluation)


def mask_values(site: MarketSite, round_: int, vector: np.ndarray, *, kind: str, label: str,
                fields: list[str] | None = None, **own: Any) -> dict[str, Any]:
    """``vector`` masked against the round's ``label`` roster, as the payload to seal; ``own`` figures stay here.

    ``fields`` names the vector's values in a range error. Every session masked under is remembered (not only the
    last), so an older roster replayed cannot make this market mask other figures with masks it already used.
    """
    roster, mask_label = fetch_roster_session(site, round_, label)
    digest = hashlib.sha256(np.ascontiguousarray(vector, dtype="float64").tobytes()).hexdigest()
    record_path = _own_record(site, round_, label)
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    # every session masked under for this (round, label): {mask_label: {roster, vector_sha256, revealed_for}};
    # record["mask_label"] names the latest
    sessions = dict(record.get("sessions", {}))
    earlier = sessions.get(mask_label)
    if earlier and mask_label != record.get("mask_label"):  # a superseded roster posted again (replayed)
        raise secagg.SecAggError(
            f"market '{site.market}' already masked {label} figures under round {round_}'s session '{mask_label}' "
            "and has masked under a newer roster since; refusing to mask under the old one again")
    # masked before under this session: only the very same figures, for the very same roster, may be sent again
    if earlier and (earlier.get("vector_sha256") != digest or earlier.get("roster") != sorted(roster)):
        raise secagg.SecAggError(
            f"market '{site.market}' already masked other {label} figures (or for another roster) under round "
            f"{round_}'s session '{mask_label}'; refusing to mask new ones with the same masks (the aggregator "
            "must publish a fresh roster)")
    try:
        masked = secagg.mask_vector(vector, me=site.identity(), roster=roster, federation=site.federation.name,
                                    round=round_, label=mask_label, fields=fields)
    except secagg.FixedPointRangeError as exc:
        raise secagg.FixedPointRangeError(f"market '{site.market}', round {round_} {label}: {exc}") from None
    revealed_for = earlier.get("revealed_for") if earlier else None  # sending the same again resets nothing
    sessions[mask_label] = {"roster": sorted(roster), "vector_sha256": digest, "revealed_for": revealed_for}
    atomic_write_json(record_path, {"round": round_, "roster": sorted(roster), **own, "mask_label": mask_label,
                                    "sessions": sessions})
    return {"market": site.market, "secagg": {"kind": kind, "label": label, "size": int(np.size(vector)),
                                              "masked": secagg.to_wire(masked)}}


def reveal(site: MarketSite, round_: int, label: str = LABEL) -> dict[str, Any]:
    """A survivor's seeds with the markets missing from the sum, for the centre to remove their masks.

    Refused unless this market masked in this round, and refused a second time for a different survivors' list
    (an aggregator asking twice could otherwise learn a market's part by declaring it dropped after all).
    """
    record_path = _own_record(site, round_, label)
    if not record_path.exists():
        raise secagg.SecAggError(f"market '{site.market}' did not mask {label} in round {round_}: nothing to reveal")
    record = json.loads(record_path.read_text())
    sessions = dict(record.get("sessions", {}))
    roster, mask_label = fetch_roster_session(site, round_, label)
    session = sessions.get(mask_label)
    # only the session it last masked under: the centre may hold every market's vector of an older one
    if session is None or mask_label != record.get("mask_label"):
        raise secagg.SecAggError(f"market '{site.market}': round {round_}'s roster changed since it masked; "
                                 "no seeds to reveal for this one")
    if sorted(roster) != session["roster"]:  # only ever reveal for the roster it masked with
        raise secagg.SecAggError(f"market '{site.market}': round {round_}'s roster {sorted(roster)} is not the "
                                 f"one it masked with {session['roster']}; refusing to reveal")
    doc = _fetch_signed(site, round_, _named("survivors.json", label), SURVIVORS_KIND)
    survivors = sorted(doc.get("survivors") or [])
    if doc.get("round") != round_ or doc.get("label", LABEL) != label or not set(survivors) <= set(session["roster"]):
        raise secagg.SecAggError(f"market '{site.market}': survivors list for round {round_} is not a subset of "
                                 f"the roster {session['roster']}")
    if session["revealed_for"] not in (None, survivors):
        raise secagg.SecAggError(f"market '{site.market}' already revealed seeds for survivors "
                                 f"{session['revealed_for']} in round {round_}; refusing a second, different list")
    seeds = secagg.reveal_seeds(me=site.identity(), roster=roster, survivors=survivors,
                                federation=site.federation.name, round=round_, label=mask_label)
    sessions[mask_label] = {**session, "revealed_for": survivors}
    atomic_write_json(record_path, {**record, "sessions": sessions})
    return {"market": site.market, "round": round_, "label": label, "seeds": seeds}


# --- centre side ---------------------------------------------------------------------------------


def masked_vectors(opened: dict[str, dict], roster: list[str]) -> tuple[str, dict[str, np.ndarray], dict[str, str]]:
    """(kind, masked vector by market, reasons for payloads refused) from the opened metrics envelopes."""
    vectors, refused, kinds = {}, {}, set()
    for market, payload in sorted(opened.items()):
        if market not in roster:
            continue
        body = payload.get("secagg") if isinstance(payload, dict) else None
        if not isinstance(body, dict) or set(payload) != {"market", "secagg"}:
            refused[market] = "sent its evaluation in clear (or malformed); secure aggregation expects only a " \
                              "masked vector, so it is left out of the totals"
            continue
        try:
            vectors[market] = secagg.from_wire(body["masked"])
            kinds.add(body["kind"])
        except (KeyError, secagg.SecAggError) as exc:
            refused[market] = f"malformed masked vector: {exc}"
    if len(kinds) > 1:
        raise secagg.SecAggError(f"markets masked statistics of different kinds: {sorted(kinds)}")
    return (kinds.pop() if kinds else ""), vectors, refused


def unmask_totals(kind: str, vectors: dict[str, np.ndarray], roster: list[str],
                  revealed: dict[str, dict]) -> dict[str, Any]:
    """The survivors' summed evaluation, unmasked with the revealed seeds of the markets missing from it."""
    seeds = {m: p.get("seeds", {}) for m, p in revealed.items()}
    total = secagg.unmask_sum(vectors, roster=roster, revealed=seeds)
    return {**unflatten(kind, total), "markets": sorted(vectors)}


def totals_tables(round_: int, totals: dict[str, Any] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Federation rows only: one metrics row per model, one ROI row (columns as fedpipe.central.round_tables)."""
    if not totals:
        return pd.DataFrame(), pd.DataFrame()
    metric_rows = [{"round": round_, "market": "federation", "model": model,
                    **federation_metrics([totals[model]["stats"]]), "train_rows": totals["train_rows"]}
                   for model in MODELS]
    fed, local = totals["federated"]["value"], totals["local_only"]["value"]
    roi_row = {"round": round_, "market": "federation", **{k: float(fed[k]) for k in VALUE_KEYS},
               "roi": ratio(fed["savings"], fed["programme_cost"]),
               "savings_local_only": float(local["savings"]),
               "savings_vs_local_only": float(fed["savings"] - local["savings"]),
               "roi_local_only": ratio(local["savings"], local["programme_cost"])}
    return pd.DataFrame(metric_rows), pd.DataFrame([roi_row])


def open_reveals(run: Run, round_: int, parent: str, survivors: list[str],
                 label: str = LABEL) -> tuple[dict[str, dict], dict[str, str]]:
    from fedpipe.central import open_sealed

    opened, dropped = open_sealed(run, round_, parent, "reveal",
                                  slot=lambda r, m: reveal_path(run.exchange, r, m, label))
    return ({m: p for m, p in opened.items() if m in survivors and p.get("label", LABEL) == label},
            {m: why for m, why in dropped.items() if m in survivors})
