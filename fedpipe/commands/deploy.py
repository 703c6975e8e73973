"""`fedpipe deploy`: work pools and deployments for a federation on a Prefect server."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fedpipe.errors import ConfigError


def register(commands: argparse._SubParsersAction) -> None:
    deploy = commands.add_parser(
        "deploy", help="create the work pools and deployments of a federation on a Prefect server",
        description="Create, idempotently, on the Prefect server at PREFECT_API_URL: a process work pool per "
                    "market (market-<name>) and one for the centre (fedpipe-central); the round flow's "
                    "deployment federated-training/<federation> (the federation's `cadence` as its cron "
                    "schedule; its parameters editable in the UI's custom run form; markets reached through "
                    "their agents); and each market flow (market-train, market-evaluate, …) as "
                    "<flow>/<federation>-<market> on that market's pool. Run it again after changing the federation file. Then start the agents: "
                    "`fedpipe agent --central` at the centre, `fedpipe agent --market NAME --site FILE` at "
                    "each market.",
    )
    deploy.add_argument("--config", required=True, help="federation TOML file, e.g. federations/cmapss.toml")
    deploy.add_argument("--source", type=Path, help="folder with the fedpipe code the agents run "
                                                    "(default: this checkout; the same path on every machine)")
    deploy.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from fedpipe.config import load_federation

    federation = load_federation(args.config)
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(Path(args.config), "(environment)", "PREFECT_API_URL is not set: deploy needs the "
                          "council's Prefect server, e.g. PREFECT_API_URL=http://127.0.0.1:4200/api")
    from fedpipe import remote

    ids = remote.deploy_federation(federation, Path(args.config), args.source or remote.REPO)
    for name in ids:
        print(f"deployment {name}")
    cadence = f"on cron '{federation.cadence}'" if federation.cadence else "on demand only (no cadence set)"
    print(f"Rounds run {cadence}; start one from the UI: Deployments → federated-training/{federation.name} → Run.")
    return 0
