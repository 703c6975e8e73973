"""`fedpipe models`: the council's model registry (list, show, promote, rollback)."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models", help="list, inspect, promote or roll back registered global models",
        description="The model registry of a federation ([registry] dir in the federation file, default registry/ "
                    "next to runs/). Every run registers its final global model as a new numbered version. It "
                    "becomes 'champion' only if, on every market's own held-out data, it is not worse than the "
                    "current champion by more than [registry] tolerance on [registry] metric; otherwise it is "
                    "'challenger' and its gate.json says which market blocked it and by how much.",
    )
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", required=True, help="federation TOML file, e.g. federations/cmapss.toml")
    actions.add_parser("list", parents=[common], help=(h := "versions with their aliases, runs and status"),
                       description=h)
    show = actions.add_parser("show", parents=[common], help=(h := "a version's model card (or --lineage/--gate as JSON)"),
                              description=h)
    show.add_argument("version", nargs="?", default="champion", help="number, 'champion' (default) or 'challenger'")
    show.add_argument("--lineage", action="store_true", help="print the lineage JSON instead of the card")
    show.add_argument("--gate", action="store_true", help="print the gate decision JSON instead of the card")
    promote = actions.add_parser("promote", parents=[common],
                                 help=(h := "make a version champion by council decision (overrides the gate)"),
                                 description=h)
    promote.add_argument("version", help="number or 'challenger'")
    promote.add_argument("--reason", required=True, help="why the council promotes it (kept in the registry)")
    rollback = actions.add_parser("rollback", parents=[common],
                                  help=(h := "make the previous champion champion again"), description=h)
    rollback.add_argument("--reason", required=True, help="why (kept in the registry)")
    models.set_defaults(handler=handle)


def _registry(config: str):
    from fedpipe.config import load_federation
    from fedpipe.registry import Registry

    federation = load_federation(config)
    return Registry(federation.registry.dir, federation.name)


def handle(args: argparse.Namespace) -> int:
    registry = _registry(args.config)
    if args.action == "list":
        index = registry.read()
        if not index["versions"]:
            print(f"registry {registry.dir}: no versions yet (a finished `fedpipe run` registers one)")
            return 0
        print(f"registry {registry.dir}")
        print("| version | aliases | status | run | round | markets | registered |")
        print("|---|---|---|---|---|---|---|")
        for v in index["versions"]:
            aliases = ", ".join(a for a, n in index["aliases"].items() if n == v["version"]) or "-"
            print(f"| {v['version']} | {aliases} | {v['status']} | {v['run_id']} | {v['round']} | "
                  f"{', '.join(v['markets'])} | {v['registered'][:19]} |")
        return 0
    if args.action == "show":
        version = registry.resolve(args.version)
        if args.lineage or args.gate:
            print(json.dumps(registry.load(version, "lineage.json" if args.lineage else "gate.json"), indent=2))
        else:
            entry = registry.entry(version)
            print(registry.load(version, "card.md") or f"v{version}: no model card yet")
            print(f"Files: {registry.version_dir(version)}  (aliases: {', '.join(entry['aliases']) or 'none'})")
        return 0
    if args.action == "promote":
        version = registry.promote(args.version, args.reason)
        print(f"v{version} is now champion ({args.reason})")
        return 0
    version = registry.rollback(args.reason)
    print(f"rolled back: v{version} is champion again ({args.reason})")
    return 0
