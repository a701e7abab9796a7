"""Observations as a Parquet dataset, for researchers' tools (pandas, DuckDB, Polars, Dask).

Layout: hive partitions by the year of ``as_of`` (``DIR/year=2022/part-0.parquet``).
A study nearly always selects a span of time, and a year prunes whole files in
every reader (``filters=[("year", ">=", 2022)]``, DuckDB's ``hive_partitioning``,
Polars' ``scan_parquet``, Dask's ``filters``). Within a file rows are sorted by
metric, company, source and day, so the row groups' min/max statistics let the same
readers skip by metric or company as well. Metric is not a folder level: a store
holds a handful of metrics, nearly all rows one of them, so such a level adds
folders but prunes little; and every column stays in the files themselves, so a
reader that ignores the folder names (``pd.read_parquet(one_file)``) still gets all
of them with the same types. ``year`` is the one extra column a hive-aware reader adds.

Types (the same in every file): company, company_name, metric, source as strings,
as_of as a calendar date (date32), value as int64, collected_at as a UTC timestamp
(microseconds). pyarrow is an optional dependency (``headcount-tracker[parquet]``);
:func:`require_pyarrow` says so in one line when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracker.errors import InputError
from tracker.output import staged_folder

if TYPE_CHECKING:
    import pandas as pd

#: The file every dataset tracker writes holds: a later export may replace such a folder.
MARKER = "_tracker_dataset"
PARTITION = "year"
COLUMNS = ("company", "company_name", "metric", "source", "as_of", "value", "collected_at")
INSTALL = "pip install 'headcount-tracker[parquet]'"


def require_pyarrow() -> Any:
    """The pyarrow module, or an InputError saying how to install it."""
    try:
        import pyarrow
        import pyarrow.dataset
        import pyarrow.parquet
    except ImportError:
        raise InputError(f"Parquet needs pyarrow, which is not installed: {INSTALL} "
                         "(install headcount-tracker[parquet])") from None
    return pyarrow


def schema() -> Any:
    pa = require_pyarrow()
    return pa.schema([
        ("company", pa.string()), ("company_name", pa.string()), ("metric", pa.string()),
        ("source", pa.string()), ("as_of", pa.date32()), ("value", pa.int64()),
        ("collected_at", pa.timestamp("us", tz="UTC")),
    ])


@dataclass(frozen=True)
class ParquetExport:
    path: Path
    rows: int
    files: int


def write_dataset(frame: pd.DataFrame, path: str | Path) -> ParquetExport:
    """Write an export frame (:meth:`Workspace.export`) as a dataset in folder ``path``.

    Atomic as every file tracker writes (:func:`tracker.output.staged_folder`): the
    dataset is written to a temporary folder beside ``path`` and renamed over it.
    """
    import pandas as pd

    pa = require_pyarrow()
    import pyarrow.dataset as ds

    target = Path(path)
    data = frame.loc[:, list(COLUMNS)].copy()
    data["company_name"] = data["company_name"].fillna(data["company"])
    data["as_of"] = pd.to_datetime(data["as_of"]).dt.date
    data["collected_at"] = pd.to_datetime(data["collected_at"]).dt.tz_localize("UTC")
    data = data.sort_values(["metric", "company", "source", "as_of", "collected_at"],
                            kind="stable")
    table = pa.Table.from_pandas(data, schema=schema(), preserve_index=False)
    years = pa.array(pd.to_datetime(data["as_of"]).dt.year.to_numpy(), type=pa.int32())
    table = table.append_column(PARTITION, years)
    written: list[str] = []
    with staged_folder(target, marker=MARKER) as tmp:
        ds.write_dataset(
            table, tmp, format="parquet", basename_template="part-{i}.parquet",
            partitioning=ds.partitioning(pa.schema([(PARTITION, pa.int32())]),
                                         flavor="hive"),
            existing_data_behavior="overwrite_or_ignore", preserve_order=True,
            file_visitor=lambda f: written.append(f.path),
        )
    return ParquetExport(target, len(data), len(written))
