"""`fedpipe validate`: run the data contract where a market's data lives and build its Data Docs."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "validate", help="check one market's data against the contract and build its Data Docs (HTML)",
        description="Run in the market: load its data, validate the training and held-out tables against the use "
                    "case's Great Expectations suite (expectations/<suite>.json), and build the Great Expectations "
                    "Data Docs into the market's state folder (<state>/<federation>/data-docs/index.html). The "
                    "Data Docs can show sample row values and stay in the market; what the market shares with the "
                    "centre is the summary printed here (expectations passed, counts, no rows). Exit status 1 if "
                    "a table breaks the contract.",
    )
    cmd.add_argument("--config", required=True, help="federation TOML file, e.g. federations/cmapss.toml")
    cmd.add_argument("--market", required=True, help="the market to validate (a [markets.<name>] of the file)")
    cmd.add_argument("--no-docs", action="store_true", help="print the summary only, skip the HTML Data Docs")
    cmd.add_argument("--json", action="store_true", help="print the summary as JSON")
    cmd.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fedpipe import contract
    from fedpipe.config import load_federation
    from fedpipe.errors import ConfigError
    from fedpipe.market import MarketSite, load_data
    from fedpipe.storage import Exchange, atomic_write_json

    federation = load_federation(args.config)
    if args.market not in federation.markets:
        raise ConfigError(args.config, "markets", f"no market '{args.market}' (markets: {', '.join(federation.markets)})")
    site = MarketSite(federation, args.market, Exchange(Path(federation.runs_dir) / "validate-exchange"))
    data = load_data(site)
    summaries = [contract.validate_table(getattr(data, t), suite_path=site.suite_path, market=site.market,
                                         file=Path(data.sources.get(t, t)).name) for t in ("train", "test")]
    atomic_write_json(site.state_dir / "validation-summary.json", [s.to_dict() for s in summaries])
    if args.json:
        print(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        for s in summaries:
            verdict = "passed" if s.success else "FAILED"
            print(f"{s.market}: {s.file}: {verdict}: {s.passed}/{s.evaluated} expectations, {s.n_rows} rows "
                  f"(contract {s.suite} {s.contract_version})")
            for f in s.failures:
                print(f"  - {f['field'] or '(table)'}: {f['problem']} [{f['expectation']}]")
    if not args.no_docs:
        from fedpipe.datadocs import build_data_docs

        index = build_data_docs({"train": data.train, "test": data.test}, site.suite_path,
                                site.state_dir / "data-docs", site.market)
        print(f"Data Docs (stay in the market): {index}")
    return 0 if all(s.success for s in summaries) else 1
