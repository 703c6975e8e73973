"""What runs at the centre: publish signed global models, open sealed updates, aggregate, record the round.

Nothing here opens a market's data folder. The centre knows each market by its public keys, and learns only what
arrives through the exchange: sealed trees with their row counts, sealed metrics, and status notes.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from fedpipe import keys, sealing, strategies, trust
from fedpipe.aggregation import TreeUpdate, aggregate_bagging, check_compatible, dump_model_doc
from fedpipe.config import FederationConfig
from fedpipe.errors import QuorumError, SealError
from fedpipe.faults import crash_point
from fedpipe.metrics import headline_metrics
from fedpipe.federation_metrics import federation_metrics
from fedpipe.strategies import cyclic
from fedpipe.strategies.personal import choice_table
from fedpipe.roi import federation_roi, ratio
from fedpipe.storage import Exchange, atomic_write_bytes, atomic_write_json, atomic_write_parquet

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One training run: its folder under runs/, its exchange, and what each round recorded."""

    federation: FederationConfig
    run_id: str
    root: Path
    exchange: Exchange
    rounds: list[dict] = field(default_factory=list)
    genesis: str = ""  # sha256 of the run's signed genesis document: round 1's parent (publish_genesis)

    def model_path(self, round_: int) -> Path:
        return self.root / "models" / f"round-{round_:03d}.json"


def new_run_id(federation: FederationConfig) -> str:
    return f"{federation.name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


def start_run(federation: FederationConfig, run_id: str | None = None, exchange_url: str | None = None) -> Run:
    """Create the run folder, point runs/latest at it, make sure the aggregator has keys, post the run's genesis."""
    run_id = run_id or new_run_id(federation)
    root = federation.runs_dir / run_id
    root.mkdir(parents=True, exist_ok=True)
    if federation.source is not None:
        atomic_write_bytes(root / "federation.toml", Path(federation.source).read_bytes())
    latest = federation.runs_dir / "latest"
    tmp_link = federation.runs_dir / f".latest.{os.getpid()}"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(run_id)
    os.replace(tmp_link, latest)  # swap the link atomically
    keys.ensure_identity(federation.keys_dir, "aggregator")
    if exchange_url is None and federation.exchange:
        exchange_url = f"{federation.exchange.rstrip('/')}/{run_id}"  # one prefix per run in a shared store
        if "://" not in exchange_url:
            exchange_url = str(Path(exchange_url).resolve())  # a folder: the same path for every market
    run = Run(federation, run_id, root, Exchange(exchange_url or root / "exchange"))
    run.genesis = publish_genesis(run)
    return run


def publish_genesis(run: Run) -> str:
    """Sign a fresh genesis document for this (re)start of the run, keep it and post it; return its sha256.

    It is round 1's parent (fedavg: round 0's): a random nonce makes it differ in every run, so a first-round
    envelope captured in an earlier run of the federation names another parent and is refused here. A resumed run
    gets a new one too: envelopes of the interrupted attempt do not count.
    """
    raw = json.dumps({"kind": sealing.GENESIS_KIND, "federation": run.federation.name, "run_id": run.run_id,
                      "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "nonce": secrets.token_hex(16)}, sort_keys=True).encode()
    aggregator = keys.load_identity(run.federation.keys_dir, "aggregator")
    signature = sealing.sign_model(raw, federation=run.federation.name, round=0, signer=aggregator,
                                   kind=sealing.GENESIS_KIND)
    atomic_write_bytes(run.root / "genesis.json", raw)
    path = run.exchange.genesis()
    run.exchange.put(path, raw)
    run.exchange.put(path + ".sig", signature)
    return sealing.sha256_hex(raw)


def bind_to_run(doc: dict, genesis: str) -> dict:
    """A copy of ``doc`` carrying this run's genesis hash (as an XGBoost learner attribute, or a key of a linear
    model), so two runs never publish byte-identical models: an update names its parent model's hash, and that
    hash then names the run too (replaying an update from another run's round 2 fails like one from round 1)."""
    doc = copy.deepcopy(doc)
    if "learner" in doc:
        doc["learner"].setdefault("attributes", {})["fedpipe_run"] = genesis
    else:
        doc["fedpipe_run"] = genesis
    return doc


def publish_global_model(run: Run, round_: int, doc: dict) -> str:
    """Sign the round's global model, keep it in the run folder and post it to the exchange."""
    raw = dump_model_doc(bind_to_run(doc, run.genesis))
    aggregator = keys.load_identity(run.federation.keys_dir, "aggregator")
    signature = sealing.sign_model(raw, federation=run.federation.name, round=round_, signer=aggregator)
    atomic_write_bytes(run.model_path(round_), raw)
    crash_point("after-model-saved", round_)
    path = run.exchange.global_model(round_)
    run.exchange.put(path, raw)
    run.exchange.put(path + ".sig", signature)
    crash_point("after-model-published", round_)
    return sealing.sha256_hex(raw)


def publish_visit_model(run: Run, round_: int, visits: int, doc: dict) -> str:
    """Cyclic: sign and post the model as it stands after ``visits`` markets this round; the next market starts there."""
    raw = dump_model_doc(bind_to_run(doc, run.genesis))
    aggregator = keys.load_identity(run.federation.keys_dir, "aggregator")
    path = run.exchange.visit_model(round_, visits)
    run.exchange.put(path, raw)
    run.exchange.put(path + ".sig", sealing.sign_model(raw, federation=run.federation.name, round=round_,
                                                       signer=aggregator, kind=cyclic.visit_kind(visits)))
    return sealing.sha256_hex(raw)


def leave_out(run: Run, round_: int, market: str, reason: str) -> None:
    """The centre's decision that a market is out of this round: whatever it posts later is not counted."""
    note = {"market": market, "round": round_, "status": "dropped", "reason": reason}
    run.exchange.put(run.exchange.dropped(round_, market), json.dumps(note).encode())


def _status_reason(exchange: Exchange, round_: int, market: str) -> str:
    path = exchange.status(round_, market)
    if not exchange.exists(path):
        return "no update delivered"
    try:
        note = json.loads(exchange.get(path))
        return str(note.get("reason") or f"status '{note.get('status')}' but no sealed update")
    except (ValueError, AttributeError):
        return "no update delivered, and its status note is unreadable"


def _known_senders(federation: FederationConfig) -> dict[str, list[keys.PublicIdentity]]:
    """Each market's trusted keys (registered in the federation file, else keys_dir; rotated-out keys in grace)."""
    return trust.senders(federation)


def open_sealed(run: Run, round_: int, parent: str | dict[str, str], kind: str, slot=None,
                markets: list[str] | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """Open every market's (or only ``markets``') sealed ``kind`` ("update" or "metrics") for a round.

    ``parent`` is the model hash each envelope must name (round 1: the run's genesis hash): one for all, or one
    per market (cyclic visits); a market missing from that dict was not asked, and nothing of its counts.
    ``slot(round_, market)`` overrides where a market's envelope is read from (e.g. hold-out screening reports).

    Returns (opened payloads by market, reasons by market for those left out). A market's bad envelope is
    that market's problem only: it is reported and the others go on.
    """
    if kind == "update":
        crash_point("after-updates", round_)
    for expected in parent.values() if isinstance(parent, dict) else [parent]:
        sealing.check_binding(run.federation.name, round_, expected)  # a wrong parent here is the centre's bug
    senders = _known_senders(run.federation)
    aggregator = keys.decryption_identities(run.federation.keys_dir, "aggregator")  # current + retired in grace
    opened, dropped = {}, {}
    for market in markets if markets is not None else run.federation.markets:
        path = slot(round_, market) if slot else \
            run.exchange.update(round_, market) if kind == "update" else run.exchange.metrics(round_, market)
        try:
            decided = run.exchange.dropped(round_, market)
            if run.exchange.exists(decided):  # the centre already left it out (timed out): late updates don't count
                dropped[market] = json.loads(run.exchange.get(decided))["reason"]
                continue
            if not run.exchange.exists(path):
                dropped[market] = _status_reason(run.exchange, round_, market)
                continue
            expected = parent.get(market) if isinstance(parent, dict) else parent
            if expected is None:  # e.g. cyclic: never visited this round, so there is no model it could start from
                raise SealError(f"market '{market}' was not asked to take part in round {round_}: no parent "
                                f"model to check its {kind} against")
            header, payload = sealing.open_update(
                run.exchange.get(path), federation=run.federation.name, round=round_, parent=expected,
                senders=senders, recipient=aggregator, kind=kind,
                revoked=trust.revoked_markets(run.federation),
                max_bytes=int(run.federation.screening.max_update_mb * 2**20),
            )
            if header["market"] != market:
                raise SealError(f"envelope in {market}'s slot was sealed by market '{header['market']}'")
            opened[market] = json.loads(payload)
        except (SealError, ValueError, OSError) as exc:
            dropped[market] = f"rejected {kind}: {exc}"
            log.warning("round %d: market %s: %s", round_, market, dropped[market])
    return opened, dropped


def screen_updates(global_doc: dict | None, payloads: dict[str, dict]) -> tuple[dict[str, dict], dict[str, str]]:
    """Keep the updates whose trees fit the global model; one market's malformed trees sink only that market."""
    kept, dropped = {}, {}
    reference = global_doc
    for market in sorted(payloads):
        payload = payloads[market]
        try:
            update = TreeUpdate(market, payload["model"], int(payload["n_rows"]))
            if update.n_rows <= 0:
                raise ValueError(f"market '{market}': update reports {update.n_rows} training rows")
            if reference is not None:
                check_compatible(reference, update)
            else:
                aggregate_bagging(None, [update])  # parses and checks the trees on their own
                reference = update.model
        except (KeyError, TypeError, ValueError) as exc:
            dropped[market] = f"rejected update: {exc}"
            continue
        kept[market] = payload
    return kept, dropped


def aggregate_round(global_doc: dict | None, payloads: dict[str, dict], quorum: int, round_: int,
                    strategy: str = "bagging") -> dict:
    """The next global model (combined as ``strategy`` says), or QuorumError if too few markets delivered."""
    if len(payloads) < quorum:
        raise QuorumError(
            f"round {round_}: only {len(payloads)} valid update(s) ({', '.join(sorted(payloads)) or 'none'}), "
            f"quorum is {quorum}; no global model written for this round"
        )
    if strategy == "fedavg":  # weights, not trees (fedpipe.fedavg_round)
        from fedpipe.fedavg_round import aggregate_weights

        doc = aggregate_weights(global_doc, payloads)
    else:
        updates = [TreeUpdate(market, p["model"], int(p["n_rows"])) for market, p in payloads.items()]
        doc = strategies.aggregate(strategy, global_doc, updates)
    crash_point("after-aggregate", round_)
    return doc


def round_tables(round_: int, evaluations: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-market metric rows (both models) and ROI rows (per market plus the federation)."""
    metric_rows, roi_rows = [], []
    for market, ev in sorted(evaluations.items()):
        for model in [m for m in ("federated", "local_only", "personalised") if m in ev]:
            metric_rows.append({"round": round_, "market": market, "model": model, **ev[model]["metrics"],
                                "train_rows": ev["train_rows"]})
        fed, local = ev["federated"]["value"], ev["local_only"]["value"]
        roi_rows.append({
            "round": round_, "market": market,
            **{k: float(fed[k]) for k in ("cost_no_model", "cost_model", "savings", "programme_cost")},
            "roi": ratio(fed["savings"], fed["programme_cost"]),
            "savings_local_only": float(local["savings"]),
            "roi_local_only": ratio(local["savings"], local["programme_cost"]),
            "savings_vs_local_only": float(fed["savings"] - local["savings"]),
        })
    if roi_rows:
        total = federation_roi(roi_rows)
        local_cost = sum(ev["local_only"]["value"]["programme_cost"] for ev in evaluations.values())
        roi_rows.append({"round": round_, "market": "federation", **total,
                         "roi_local_only": ratio(total["savings_local_only"], local_cost)})
    metric_rows += federation_metric_rows(round_, evaluations)
    return pd.DataFrame(metric_rows), pd.DataFrame(roi_rows)


def federation_metric_rows(round_: int, evaluations: dict[str, dict]) -> list[dict]:
    """``market = "federation"`` rows from the markets' summed sufficient statistics, never averaged scores."""
    rows = []
    for model in ("federated", "local_only"):
        stats = [ev[model]["stats"] for ev in evaluations.values() if "stats" in ev.get(model, {})]
        if stats and len(stats) == len(evaluations):
            rows.append({"round": round_, "market": "federation", "model": model, **federation_metrics(stats),
                         "train_rows": sum(int(ev["train_rows"]) for ev in evaluations.values())})
    return rows


def record_round(run: Run, round_: int, model_sha: str, contributors: dict[str, int], dropped: dict[str, str],
                 metrics: pd.DataFrame, roi: pd.DataFrame) -> dict:
    """Append the round to metrics.parquet, roi.parquet and rounds.json, each replaced atomically."""
    for name, frame in (("metrics.parquet", metrics), ("roi.parquet", roi)):
        path = run.root / name
        if frame.empty and not path.exists():
            continue  # no figures this round (e.g. a secure sum that could not be unmasked): write no empty table
        previous = pd.read_parquet(path) if path.exists() else None
        if previous is not None:
            previous = previous[previous["round"] != round_]  # a re-run round replaces itself
            frame = pd.concat([previous, frame], ignore_index=True)
        atomic_write_parquet(path, frame)
    crash_point("mid-record", round_)
    record = {
        "round": round_, "model": str(run.model_path(round_).relative_to(run.root)), "model_sha256": model_sha,
        "contributors": contributors, "dropped": dropped, "finished": datetime.now(timezone.utc).isoformat(),
    }
    run.rounds = [r for r in run.rounds if r["round"] != round_] + [record]
    atomic_write_json(run.root / "rounds.json", run.rounds)
    return record


def record_failure(run: Run, round_: int, error: Exception, dropped: dict[str, str]) -> str:
    """Keep why a round could not produce a model (failure.json, summary.md); return a message that says it all.

    No model, table or round record is written for the failed round: the last good round stays the run's latest.
    """
    atomic_write_json(run.root / "failure.json", {"round": round_, "error": str(error), "dropped": dropped,
                                                  "at": datetime.now(timezone.utc).isoformat()})
    write_summary(run)
    reasons = "".join(f"\n  - {m}: {why}" for m, why in dropped.items())
    return f"{error}\nLeft out in round {round_}:{reasons or ' none'}\nDetails: {run.root / 'summary.md'}"


def comparison_table(run_root: Path) -> pd.DataFrame:
    """Last round, per market: local-only vs federated on the headline metric and ROI."""
    metrics = pd.read_parquet(run_root / "metrics.parquet")
    roi = pd.read_parquet(run_root / "roi.parquet")
    last = metrics["round"].max()
    loss, other = headline_metrics(metrics.columns)  # log_loss/auc, or mae/r2 for a regression use case
    m = metrics[metrics["round"] == last].pivot(index="market", columns="model", values=[other, loss])
    table = pd.DataFrame({f"{name}_{model}": m[(name, model)]
                          for name in (other, loss) for model in ("local_only", "federated")})
    r = roi[roi["round"] == last].set_index("market")
    table["savings_local_only"] = r["savings_local_only"]
    table["savings_federated"] = r["savings"]
    table["roi_federated"] = r["roi"]
    table["federated_better"] = table[f"{loss}_federated"] < table[f"{loss}_local_only"]
    table.loc["federation", ["savings_local_only", "savings_federated", "roi_federated"]] = (
        r.loc["federation", ["savings_local_only", "savings", "roi"]].to_numpy()
    )
    return table.reset_index()


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; numbers to four significant digits."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        return str(value)
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def write_summary(run: Run) -> Path:
    """A Markdown summary of the run: per-round participation and the final local-only vs federated table."""
    lines = [f"# Run {run.run_id}", "", f"Federation **{run.federation.name}**, use case "
             f"`{run.federation.usecase}`, strategy `{run.federation.strategy}`, "
             f"{strategies.round_step(run.federation.strategy, run.federation.trees_per_round)}.", "", "## Rounds", ""]
    for rec in run.rounds:
        dropped = "; ".join(f"{m}: {why}" for m, why in rec["dropped"].items()) or "none"
        lines.append(f"- round {rec['round']}: contributors {', '.join(sorted(rec['contributors']))}; left out: {dropped}")
    failure = run.root / "failure.json"
    if failure.exists():
        failed = json.loads(failure.read_text())
        lines += ["", f"**Stopped in round {failed['round']}**: {failed['error']}", ""]
        lines += [f"- {m}: {why}" for m, why in failed["dropped"].items()]
    if (run.root / "metrics.parquet").exists():
        lines += ["", "## Last round: local-only vs federated", "", markdown_table(comparison_table(run.root))]
        metrics = pd.read_parquet(run.root / "metrics.parquet")
        if "personalised" in set(metrics["model"]):
            lines += ["", "## Personalisation: the best model for each market (last round, held-out rows)", "",
                      markdown_table(choice_table(metrics))]
    path = run.root / "summary.md"
    atomic_write_bytes(path, "\n".join(lines).encode() + b"\n")
    return path
