"""`fedpipe agent`: a Prefect worker for one market (next to its data) or for the centre."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fedpipe.errors import ConfigError


def register(commands: argparse._SubParsersAction) -> None:
    agent = commands.add_parser(
        "agent", help="run a market's (or the centre's) agent: a Prefect worker on its work pool",
        description="Start a Prefect process worker on work pool market-<NAME> (or fedpipe-central with "
                    "--central), talking to the server at PREFECT_API_URL. A market agent runs that market's "
                    "flows on this machine; its data folder, state folder and keys come from this machine's "
                    "site file (--site or FEDPIPE_SITE; see fedpipe/site.py), never from the centre. On first "
                    "start it creates the market's keys; give the centre its <NAME>.pub.json and put the "
                    "aggregator's aggregator.pub.json in the site's keys_dir.",
    )
    who = agent.add_mutually_exclusive_group(required=True)
    who.add_argument("--market", help="the market this machine runs, e.g. FD001")
    who.add_argument("--central", action="store_true", help="the centre's agent (runs the round flow)")
    agent.add_argument("--site", type=Path, help="this machine's site file (default: $FEDPIPE_SITE)")
    agent.add_argument("--poll-s", type=float, help="how often the worker asks for work "
                                                  "(default: PREFECT_WORKER_QUERY_SECONDS, else 5 s)")
    agent.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from fedpipe import keys
    from fedpipe.remote import CENTRAL_POOL, market_pool
    from fedpipe.site import ENV, load_site

    env = dict(os.environ)
    if not env.get("PREFECT_API_URL"):
        raise ConfigError(Path("(environment)"), "PREFECT_API_URL",
                          "not set: an agent needs the council's Prefect server, e.g. http://127.0.0.1:4200/api")
    if args.central:
        pool, name = CENTRAL_POOL, "agent-central"
    else:
        site_file = args.site or (Path(env[ENV]) if env.get(ENV) else None)
        if site_file is None:
            raise ConfigError(Path("(command line)"), "--site", "a market agent needs its site file (or FEDPIPE_SITE)")
        site = load_site(site_file)
        if site.market != args.market:
            raise ConfigError(site.source, "market", f"this site file is for '{site.market}', not '{args.market}'")
        public = keys.ensure_identity(site.keys_dir, site.market)
        print(f"{site.market}: keys in {site.keys_dir} (fingerprint {public.fingerprint}); data stays in {site.data}")
        env[ENV] = str(site.source)
        pool, name = market_pool(args.market), f"agent-{args.market}"
    if args.poll_s is not None:
        env["PREFECT_WORKER_QUERY_SECONDS"] = str(args.poll_s)
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "5")
    print(f"{name}: polling work pool {pool} on {env['PREFECT_API_URL']}", flush=True)
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", name]
    os.execvpe(argv[0], argv, env)  # the worker is this process: stopping it stops the agent
    return 0
