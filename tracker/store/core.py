"""The observation store: bulk, idempotent writes and point-in-time reads.

Writes stage a whole batch in a temporary table with one executemany (SQLite) or
COPY (PostgreSQL), then append, in a single INSERT ... SELECT, only the rows whose
value differs from the latest one already known for that (series, source, day).
That one rule gives both properties the product needs: importing the same data
twice adds nothing, and a corrected value becomes a revision with its own
``collected_at`` instead of overwriting history.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Date, DateTime, bindparam, insert, select, text

from tracker.errors import NotFoundError, StoreError
from tracker.records import DEFAULT_METRIC
from tracker.store import companies as company_ops
from tracker.store import engine as engine_ops
from tracker.store import partitions
from tracker.store.schema import companies, company_aliases, series, sources

if TYPE_CHECKING:
    # pandas and numpy are imported by the methods that need them: `tracker status`
    # opens a Store and must start without them (tests/test_cli.py checks it)
    import numpy as np
    import pandas as pd

OBS_COLUMNS = ["company", "metric", "source", "as_of", "value", "collected_at"]


@dataclass(frozen=True)
class WriteResult:
    """How many rows a write was given and how many were new or revised."""

    received: int
    inserted: int

    @property
    def unchanged(self) -> int:
        return self.received - self.inserted


#: A row is new when it differs from the value known at its own collection time (not
#: the latest overall): an older snapshot imported again adds nothing. The one rule of
#: the append, for both dialects. ``:lo`` and ``:hi`` are the staged rows' first and
#: last day: redundant for the result (every staged day lies between them), they let
#: PostgreSQL prune the partitions of other quarters when it plans the statement
#: instead of once per staged row.
_APPEND_SQL = """
INSERT INTO observations (series_id, source_id, as_of, value, collected_at, run_id)
SELECT s.series_id, s.source_id, s.as_of, s.value, :ts, :run
FROM staging_obs s
WHERE COALESCE((
    SELECT o.value FROM observations o
    WHERE o.series_id = s.series_id AND o.source_id = s.source_id AND o.as_of = s.as_of
      AND o.as_of >= :lo AND o.as_of <= :hi AND o.collected_at <= :ts
    ORDER BY o.collected_at DESC LIMIT 1), -1) <> s.value
ORDER BY s.series_id, s.source_id, s.as_of
"""

#: PostgreSQL checks observations' parents set-wise (migration 0011): staged rows
#: whose series or source does not exist, and whether the run exists.
_ORPHANS_SQL = """
SELECT (SELECT count(*) FROM staging_obs s
        WHERE NOT EXISTS (SELECT 1 FROM series p WHERE p.id = s.series_id)),
       (SELECT count(*) FROM staging_obs s
        WHERE NOT EXISTS (SELECT 1 FROM sources p WHERE p.id = s.source_id)),
       (SELECT count(*) FROM runs WHERE id = :run)
"""

#: PostgreSQL's binary COPY: signature, flags, header extension; and the trailer.
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_PGCOPY_TRAILER = b"\xff\xff"
#: One staged row in COPY BINARY: field count, then (length, value) per column.
_PGCOPY_ROW = [("n", ">i2"), ("l1", ">i4"), ("series_id", ">i4"), ("l2", ">i4"),
               ("source_id", ">i4"), ("l3", ">i4"), ("as_of", ">i4"), ("l4", ">i4"),
               ("value", ">i8")]
_COPY_CHUNK = 1_000_000


class Store:
    """One database, opened and migrated; cheap to keep for a process's lifetime."""

    def __init__(self, url: str, *, migrate: bool = True, create: bool = True) -> None:
        """Open ``url``; ``create=False`` refuses (MissingDatabaseError) a database that
        does not exist or holds no tracker schema, creating nothing, as read commands
        need. An existing store at an older revision is still migrated."""
        self.url = url
        self.engine = engine_ops.create(url, create_missing=create)
        self.dialect = self.engine.dialect.name
        #: whether observations is partitioned (PostgreSQL after migration 0009),
        #: asked on the first write
        self._partitioned: bool | None = None
        #: what a process may keep of tables that only grow (series and source
        #: names: :func:`tracker.store.latest.names`), so a run reads them once
        self.memo: dict[str, object] = {}
        try:
            if not create:
                with engine_ops.translate(self.engine, "checking the schema version"):
                    engine_ops.require_schema(self.engine)
            if migrate:
                self.migrate()
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Store({engine_ops.redact(self.url)!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> tuple[str | None, str | None]:
        """Bring the schema to the newest migration (no-op when already there)."""
        with engine_ops.translate(self.engine, "checking the schema version"):
            current = engine_ops.current_revision(self.engine)
        if current == engine_ops.head_revision():
            return current, current
        return engine_ops.upgrade(self.engine)

    def upgrade(self) -> tuple[str | None, str | None, list[str]]:
        """``tracker db upgrade``: :meth:`migrate`, then (PostgreSQL) the partitions of
        the current and the next quarter, so the daily appends until then need no DDL.
        Returns (revision before, after, partitions created)."""
        before, after = self.migrate()
        made: list[str] = []
        if self.dialect == "postgresql":
            with self.transaction("creating partitions") as conn:
                if partitions.is_partitioned(conn):
                    made = partitions.ensure(conn, [company_ops.now_utc().date()])
        return before, after, made

    @contextlib.contextmanager
    def transaction(self, doing: str = "writing") -> Iterator[Connection]:
        """One writing transaction; any failure rolls everything in it back.

        Writers are serialized (BEGIN IMMEDIATE on SQLite, an advisory lock on
        PostgreSQL): the "append only what is new" rule reads before it writes, and
        two concurrent imports must not both find the same value new.
        """
        with (engine_ops.translate(self.engine, doing),
              self.engine.connect().execution_options(tracker_write=True) as conn,
              conn.begin()):
            engine_ops.lock_for_writing(conn)
            yield conn

    @contextlib.contextmanager
    def reading(self, doing: str = "reading") -> Iterator[Connection]:
        with engine_ops.translate(self.engine, doing), self.engine.connect() as conn:
            yield conn

    # -- companies -----------------------------------------------------------------

    def company_id(self, name: str) -> str:
        """Resolve a user-typed company (id, alias or name) or raise NotFoundError."""
        with self.reading() as conn:
            found = company_ops.find(conn, name)
        if found is None:
            raise NotFoundError(f"unknown company {name!r} (see 'tracker companies')")
        return found

    def upsert_company(
        self,
        company_id: str,
        *,
        name: str | None = None,
        aliases: Sequence[str] = (),
        tags: dict[str, str] | None = None,
        external_ids: dict[str, str] | None = None,
        reference_count: int | None = None,
        reference_date: date | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Create or update a company declared in config; aliases point at it."""
        with contextlib.ExitStack() as stack:
            if conn is None:
                conn = stack.enter_context(self.transaction("saving a company"))
            row = conn.execute(select(companies).where(companies.c.id == company_id)).first()
            values = {
                "name": name or (row.name if row else company_id),
                "tags": {**(row.tags if row else {}), **(tags or {})},
                "external_ids": {**(row.external_ids if row else {}), **(external_ids or {})},
                "reference_count": reference_count,
                "reference_date": reference_date,
            }
            if row is None:
                conn.execute(
                    insert(companies).values(
                        id=company_id, created_at=company_ops.now_utc(), **values
                    )
                )
            else:
                conn.execute(
                    companies.update().where(companies.c.id == company_id).values(**values)
                )
            for alias in {*aliases, values["name"]}:
                key = company_ops.alias_key(alias)
                conn.execute(company_aliases.delete().where(company_aliases.c.alias == key))
                conn.execute(insert(company_aliases).values(alias=key, company_id=company_id))

    # -- writes --------------------------------------------------------------------

    def _ids(self, conn: Connection, table, key_cols: list[str], wanted: pd.DataFrame) -> pd.Series:  # type: ignore[no-untyped-def]
        """Ids for the distinct key rows in ``wanted``, inserting missing ones first."""
        import pandas as pd

        cols = [table.c[c] for c in key_cols]

        def stored() -> pd.DataFrame:
            # raw DBAPI rows: a Row object per series costs more than the query
            cursor = conn.execute(select(table.c.id, *cols)).cursor
            return pd.DataFrame(cursor.fetchall() if cursor is not None else [],
                                columns=["id", *key_cols])

        existing = stored()
        keys = wanted[key_cols].drop_duplicates()
        merged = keys.merge(existing, on=key_cols, how="left")
        missing = merged[merged["id"].isna()][key_cols]
        if len(missing):
            conn.execute(insert(table), missing.to_dict("records"))
            existing = stored()
        ids = wanted[key_cols].merge(existing, on=key_cols, how="left")["id"]
        return ids.astype("int64").set_axis(wanted.index)

    def write_frame(
        self,
        conn: Connection,
        frame: pd.DataFrame,
        *,
        collected_at: datetime | None = None,
        run_id: int | None = None,
    ) -> WriteResult:
        """Append a validated frame (company id, metric, source, as_of, value).

        ``company`` must already hold company ids (see :func:`companies.resolve`).
        Duplicate keys must have been rejected by the caller; identical duplicates
        are harmless.
        """
        import pandas as pd

        if frame.empty:
            return WriteResult(0, 0)
        frame = frame.drop_duplicates(["company", "metric", "source", "as_of"], keep="last")
        series_ids = self._ids(
            conn, series, ["company_id", "metric"],
            frame[["company", "metric"]].rename(columns={"company": "company_id"}),
        )
        source_ids = self._ids(conn, sources, ["name"], frame[["source"]].rename(
            columns={"source": "name"}))
        days = pd.to_datetime(frame["as_of"]).to_numpy().astype("datetime64[D]")
        values = frame["value"].astype("int64")
        self._stage(conn, series_ids.to_numpy(), source_ids.to_numpy(), days, values.to_numpy())
        if self.dialect == "postgresql":
            self._check_parents(conn, run_id)
        stamp = collected_at or company_ops.now_utc()
        result = conn.execute(
            text(_APPEND_SQL).bindparams(bindparam("ts", type_=DateTime()),
                                         bindparam("lo", type_=Date()),
                                         bindparam("hi", type_=Date())),
            {"ts": stamp, "run": run_id, "lo": days.min().item(), "hi": days.max().item()},
        )
        return WriteResult(len(frame), max(result.rowcount or 0, 0))

    @staticmethod
    def _check_parents(conn: Connection, run_id: int | None) -> None:
        """The foreign keys of observations, checked once for the staged batch.

        PostgreSQL's own keys check one row at a time (a trigger, an index probe and
        a row lock on the parent per row and key: the largest part of a million-row
        append), so migration 0011 drops them there and this anti-join does their
        work in one statement; SQLite keeps its keys. A failure is a bug in the
        caller, never user input (the ids come from ``_ids`` in this transaction),
        and the whole batch is refused before anything is written.
        """
        bad_series, bad_sources, runs_found = conn.execute(
            text(_ORPHANS_SQL), {"run": run_id}).one()
        problems = []
        if bad_series:
            problems.append(f"{bad_series} staged rows name a series that does not exist")
        if bad_sources:
            problems.append(f"{bad_sources} staged rows name a source that does not exist")
        if run_id is not None and not runs_found:
            problems.append(f"the batch names run {run_id}, which does not exist")
        if problems:
            raise StoreError("refusing to write observations: " + "; ".join(problems)
                             + " (nothing was written)")

    def _stage(
        self, conn: Connection, series_ids: np.ndarray, source_ids: np.ndarray,
        days: np.ndarray, values: np.ndarray,
    ) -> None:
        """Put the batch in the ``staging_obs`` temporary table the append reads.

        PostgreSQL gets one binary COPY built as a numpy record array (no Python
        loop over rows), after the partitions for its days exist; SQLite one
        executemany.
        """
        import numpy as np

        if self.dialect == "postgresql":
            if self._partitioned is None:
                self._partitioned = partitions.is_partitioned(conn)
            if self._partitioned:
                months = np.unique(days.astype("datetime64[M]"))
                partitions.ensure(conn, [m.item() for m in months])
            # the append's plan is estimated dear enough to be JIT-compiled, which costs
            # ~0.3 s per statement and saves nothing on an index-probe plan (measured)
            conn.exec_driver_sql("SET LOCAL jit = off")
            conn.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS staging_obs (series_id integer, source_id integer,"
                " as_of date, value bigint) ON COMMIT DELETE ROWS"
            )
            conn.exec_driver_sql("TRUNCATE staging_obs")
            rows = np.empty(len(days), dtype=_PGCOPY_ROW)
            rows["n"], rows["l1"], rows["l2"], rows["l3"], rows["l4"] = 4, 4, 4, 4, 8
            rows["series_id"], rows["source_id"], rows["value"] = series_ids, source_ids, values
            rows["as_of"] = (days - np.datetime64("2000-01-01", "D")).astype(np.int64)
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy("COPY staging_obs FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_PGCOPY_HEADER)
                for k in range(0, len(rows), _COPY_CHUNK):
                    copy.write(rows[k:k + _COPY_CHUNK].tobytes())
                copy.write(_PGCOPY_TRAILER)
            conn.exec_driver_sql("ANALYZE staging_obs")
            return
        conn.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS staging_obs (series_id INTEGER, source_id INTEGER,"
            " as_of DATE, value INTEGER)"
        )
        conn.exec_driver_sql("DELETE FROM staging_obs")
        text_days = days.astype(str).tolist()
        rows = list(zip(series_ids.tolist(), source_ids.tolist(), text_days, values.tolist(),
                        strict=True))
        conn.exec_driver_sql("INSERT INTO staging_obs VALUES (?, ?, ?, ?)", rows)

    # -- reads ---------------------------------------------------------------------

    def observations(
        self,
        companies_: Iterable[str] | None = None,
        *,
        metric: str | None = None,
        source: str | None = None,
        since: date | None = None,
        until: date | None = None,
        known_at: datetime | None = None,
        revisions: bool = False,
    ) -> pd.DataFrame:
        """Observations as a frame with columns ``OBS_COLUMNS``, sorted.

        By default one row per (company, metric, source, day): the latest value, or
        the latest known at ``known_at`` (naive UTC) for point-in-time replays.
        ``revisions=True`` returns every stored row instead.
        """
        import numpy as np
        import pandas as pd

        where, params = ["1=1"], {}
        if companies_ is not None:
            ids = list(companies_)
            if not ids:
                return pd.DataFrame(columns=OBS_COLUMNS)
            where.append("se.company_id IN :cids")
            params["cids"] = ids
        for clause, name, value in (
            ("se.metric = :metric", "metric", metric),
            ("so.name = :source", "source", source),
            ("o.as_of >= :since", "since", since),
            ("o.as_of <= :until", "until", until),
            ("o.collected_at <= :known", "known", known_at),
        ):
            if value is not None:
                where.append(clause)
                params[name] = value
        sql = text(
            "SELECT o.series_id, o.source_id, o.as_of, o.value, o.collected_at "
            "FROM observations o JOIN series se ON se.id = o.series_id "
            "JOIN sources so ON so.id = o.source_id WHERE " + " AND ".join(where)
        )
        binds = [bindparam("cids", expanding=True)] if "cids" in params else []
        if "known" in params:
            binds.append(bindparam("known", type_=DateTime()))
        for name in ("since", "until"):
            if name in params:
                binds.append(bindparam(name, type_=Date()))
        with self.reading("reading observations") as conn:
            result = conn.execute(sql.bindparams(*binds), params)
            # the raw DBAPI rows: building Row objects costs 10x the query itself
            rows = result.cursor.fetchall() if result.cursor is not None else []
            # only the companies read: a chart of one company must not read a
            # million series names
            names = conn.execute(text(
                "SELECT se.id, se.company_id, se.metric FROM series se"
                + (" WHERE se.company_id IN :cids" if "cids" in params else "")
            ).bindparams(*([bindparam("cids", expanding=True)] if "cids" in params else [])),
                {"cids": params["cids"]} if "cids" in params else {}).all()
            source_names = dict(conn.execute(text("SELECT id, name FROM sources")).all())
        cols = list(zip(*rows, strict=True)) if rows else [[]] * 5
        frame = pd.DataFrame({
            "series_id": np.asarray(cols[0], dtype="int64"),
            "source_id": np.asarray(cols[1], dtype="int64"),
            "as_of": _to_datetime(cols[2]),
            "value": np.asarray(cols[3], dtype="int64"),
            "collected_at": _to_datetime(cols[4]),
        })
        # one sort on integer ranks gives (company, metric, source, day, revision) order
        by_name = sorted(names, key=lambda r: (r[1], r[2]))
        series_rank = {sid: i for i, (sid, _c, _m) in enumerate(by_name)}
        source_rank = {sid: i for i, sid in enumerate(sorted(source_names,
                                                             key=source_names.__getitem__))}
        frame["_s"] = frame["series_id"].map(series_rank)
        frame["_o"] = frame["source_id"].map(source_rank)
        frame = frame.sort_values(["_s", "_o", "as_of", "collected_at"], kind="stable")
        if not revisions:
            frame = frame.drop_duplicates(["_s", "_o", "as_of"], keep="last")
        company = {sid: c for sid, c, _m in names}
        metric_of = {sid: m for sid, _c, m in names}
        out = pd.DataFrame({
            "company": frame["series_id"].map(company).to_numpy(dtype=object),
            "metric": frame["series_id"].map(metric_of).to_numpy(dtype=object),
            "source": frame["source_id"].map(source_names).to_numpy(dtype=object),
            "as_of": frame["as_of"].to_numpy(),
            "value": frame["value"].to_numpy(),
            "collected_at": frame["collected_at"].to_numpy(),
        })
        return out

    def companies_summary(self) -> pd.DataFrame:
        """Per company: name, first and last day, last value, number of observations
        (of ``employees``), and every metric it has observations of (``metrics``,
        ``employees`` first, then its segments), so segments are visible at a glance."""
        import pandas as pd

        sql = text(
            "SELECT c.id, c.name, MIN(o.as_of), MAX(o.as_of), COUNT(o.id) "
            "FROM companies c LEFT JOIN series se ON se.company_id = c.id AND se.metric = :m "
            "LEFT JOIN observations o ON o.series_id = se.id GROUP BY c.id, c.name ORDER BY c.id"
        )
        with self.reading("listing companies") as conn:
            rows = conn.execute(sql, {"m": DEFAULT_METRIC}).all()
        summary = pd.DataFrame(
            rows, columns=["id", "name", "first_day", "last_day", "observations"]
        )
        # only the rows of each series' last day, not the whole table
        last_sql = text(
            "SELECT se.company_id, so.name, o.collected_at, o.value "
            "FROM observations o JOIN series se ON se.id = o.series_id "
            "JOIN sources so ON so.id = o.source_id "
            "JOIN (SELECT series_id, MAX(as_of) AS d FROM observations GROUP BY series_id) x "
            "ON x.series_id = o.series_id AND x.d = o.as_of WHERE se.metric = :m"
        )
        with self.reading("listing companies") as conn:
            last_rows = conn.execute(last_sql, {"m": DEFAULT_METRIC}).all()
        last = pd.DataFrame(last_rows, columns=["company", "source", "collected_at", "value"])
        if not last.empty:
            # several sources on the last day: the latest-learned value, sources by name
            last = (last.sort_values(["company", "source", "collected_at"])
                    .groupby("company").tail(1).set_index("company")["value"])
            summary["last_value"] = summary["id"].map(last).astype("Int64")
        else:
            summary["last_value"] = pd.Series(dtype="Int64")
        for col in ("first_day", "last_day"):
            summary[col] = pd.to_datetime(summary[col]).dt.date
        # every metric a company has (its role segments too), last so that readers
        # of the columns above by position keep working
        with self.reading("listing companies") as conn:
            held = pd.DataFrame(conn.execute(text(
                "SELECT se.company_id, se.metric FROM series se WHERE EXISTS "
                "(SELECT 1 FROM observations o WHERE o.series_id = se.id)")).all(),
                columns=["company", "metric"])
        named = (held.assign(plain=held["metric"] != DEFAULT_METRIC)
                 .sort_values(["company", "plain", "metric"])
                 .groupby("company")["metric"].agg(" ".join))
        summary["metrics"] = summary["id"].map(named).fillna("")
        return summary


def _to_datetime(values: Sequence[object]) -> pd.Series:
    """Dates and timestamps as datetime64[ns], from SQLite strings or driver objects."""
    import numpy as np
    import pandas as pd

    if not len(values):
        return pd.Series([], dtype="datetime64[ns]")
    if isinstance(values[0], str):
        return pd.Series(pd.to_datetime(np.asarray(values), format="ISO8601"),
                         dtype="datetime64[ns]")
    return pd.Series(pd.to_datetime(list(values)), dtype="datetime64[ns]")
