"""Persistence: the append-only observation store and everything kept beside it.

Only this package speaks SQL. Other layers that must do several store operations in
one transaction (an import: resolve companies, then append) hold a ``Connection``
from ``Store.transaction()`` and pass it back to store functions, never use it.
"""

from tracker.store.core import OBS_COLUMNS, Connection, Store, WriteResult

__all__ = ["OBS_COLUMNS", "Connection", "Store", "WriteResult"]
