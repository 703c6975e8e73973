"""Test session set-up: a private Prefect home and one temporary Prefect API for the whole session."""

import os
import tempfile

# Before anything imports prefect: never touch the user's own Prefect profile or server.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="fedpipe-test-prefect-")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_PROFILE", None)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The temporary API runs on SQLite: a "database is locked" answer (HTTP 500) is retried, not a test failure.
os.environ.setdefault("PREFECT_CLIENT_RETRY_EXTRA_CODES", "500")
os.environ.setdefault("PREFECT_SERVER_DATABASE_TIMEOUT", "30")
