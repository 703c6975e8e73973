"""Test session set-up: a private Prefect home and one temporary Prefect API for the whole session."""

import os
import tempfile

# Before anything imports prefect: never touch the user's own Prefect profile or server.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="fedpipe-test-prefect-")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILE", None)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
