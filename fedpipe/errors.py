"""The exceptions fedpipe raises, one per kind of failure a user must act on."""

from __future__ import annotations


class FedpipeError(Exception):
    """Base class: every error fedpipe raises on purpose."""


class ConfigError(FedpipeError):
    """A federation config is missing, unreadable or has a bad field."""

    def __init__(self, file: str, field: str, problem: str):
        self.file, self.field, self.problem = str(file), field, problem
        super().__init__(f"{self.file}: field '{field}': {problem}")


class MarketDataError(FedpipeError):
    """A market's data is missing, unreadable or breaks the data contract.

    Always names the market, the file and the field, so the market team knows what to fix.
    """

    def __init__(self, market: str, file: str, field: str | None, problem: str):
        self.market, self.file, self.field, self.problem = market, str(file), field, problem
        where = f"field '{field}'" if field else "file"
        super().__init__(f"market '{market}': {self.file}: {where}: {problem}")


class MarketExcluded(FedpipeError):
    """A market flow stopped and the market sits the round out. The message is its status note's reason: it names
    the file and field but not where the market's data lives, because a failed flow's error reaches the Prefect
    server (the council's, in deployed mode)."""


class SealError(FedpipeError):
    """A sealed envelope was rejected: bad signature, wrong round, unknown market, tampering.

    Like Fernet's InvalidToken, one exception for every rejection; the message says which check failed.
    """


class QuorumError(FedpipeError):
    """Too few markets delivered a valid update for a round to produce a global model."""


class StrategyError(FedpipeError, ValueError):
    """A strategy the round flow cannot run with this federation or on this machine.

    Also a ValueError, as the strategy check raised before it had its own class.
    """


class FederatedUnavailable(FedpipeError, RuntimeError):
    """The installed xgboost lacks the federated plugin the 'histogram' strategy needs (a RuntimeError, as before)."""
