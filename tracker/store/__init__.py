"""Persistence: the append-only observation store and everything kept beside it."""

from tracker.store.core import OBS_COLUMNS, Store, WriteResult

__all__ = ["OBS_COLUMNS", "Store", "WriteResult"]
