"""One module per `fedpipe` sub-command; each exposes ``register(subparsers)``.

Add a command by writing a module here and naming it in ``COMMANDS`` (order = order in ``--help``).
"""

COMMANDS = ["run", "keys", "deploy", "agent", "up", "report", "validate", "models"]
