"""`fedpipe up`: the deployed federation on this machine, in one command."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser(
        "up", help="start a local Prefect server, deploy the federation, start an agent per market",
        description="Start `prefect server start` on 127.0.0.1 (its own PREFECT_HOME and SQLite database under "
                    "--home), deploy the federation (fedpipe deploy), write a site file per market under "
                    "<home>/sites/ (each agent sees only its own data, state and keys), start the centre's agent "
                    "and one agent per market, each its own process, and print the UI address. Open it, go to "
                    "Deployments → federated-training/<federation> → Run, and watch the round. Ctrl-C stops "
                    "everything. The centre uses a copy of the federation file with its own keys folder "
                    "(<home>/centre/). Logs: <home>/logs/.",
    )
    up.add_argument("--config", default="federations/cmapss.toml", help="federation file (default: the demo)")
    up.add_argument("--port", type=int, default=4200, help="server port on 127.0.0.1 (default 4200)")
    up.add_argument("--home", type=Path, default=Path(".fedpipe/up"), help="state folder (default .fedpipe/up)")
    up.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from fedpipe.config import load_federation
    from fedpipe.stack import Stack, local_sites

    from fedpipe.stack import centre_federation

    stack = Stack(args.home.resolve(), args.port)
    config = centre_federation(Path(args.config).resolve(), stack.root / "centre" / "federation.toml")
    federation = load_federation(config)
    try:
        print(f"starting the Prefect server on {stack.ui_url} (logs in {stack.root / 'logs'}) …", flush=True)
        stack.start_server()
        print(stack.fedpipe("deploy", "--config", str(config)).stdout, end="")
        sites = local_sites(federation, stack.root)
        stack.start_central_agent()
        for market, site in sites.items():
            stack.start_agent(market, site.source)
            print(f"agent {market}: site file {site.source}")
        print(f"\nPrefect UI: {stack.ui_url}\nStart a round: Deployments → federated-training/{federation.name} → "
              "Run (Custom run to change rounds). Ctrl-C stops the server and the agents.", flush=True)
        while True:
            for name, proc in stack.processes.items():
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; see {stack.root / 'logs' / name}.log")
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping …")
        return 0
    finally:
        stack.stop_all()
