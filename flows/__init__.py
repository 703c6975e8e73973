"""Prefect flows: the story of a round (flows.round) and of a market's part in it (flows.market)."""
