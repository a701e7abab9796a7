"""Long-format rows of a synthetic matrix, as ``tracker import`` reads them (benchmarks' set-up)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def long_rows(m: pd.DataFrame) -> pd.DataFrame:
    """company, date, employees for every observed cell of a dates x series matrix."""
    values = m.to_numpy()
    r, c = np.nonzero(np.isfinite(values))
    names = np.asarray([s.split("/")[0] for s in m.columns], dtype=object)
    return pd.DataFrame({"company": names[c], "date": m.index[r].strftime("%Y-%m-%d"),
                         "employees": np.rint(values[r, c]).astype(np.int64)})


def write_parquet_block(folder: str, block: int, n: int, days: int, seed_offset: int = 0
                        ) -> tuple[int, float]:
    """Block ``block`` of ``n`` seeded synthetic companies (``c0000000``, ... in order) as
    Parquet files of tracker's export schema, one per year (``year=Y/part-BLOCK.parquet``):
    a dataset of any size is written a block at a time, never held whole. Its rows and
    the seconds spent generating them."""
    import time
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tracker.detect.synthetic import generate
    from tracker.parquet import schema

    t0 = time.perf_counter()
    m, _ = generate(n, days, seed=block + seed_offset, quiet_fraction=0.7)
    gen = time.perf_counter() - t0
    values = m.to_numpy().T  # companies x days: rows come out sorted by company, day
    c, r = np.nonzero(np.isfinite(values))
    day = m.index.to_numpy().astype("datetime64[D]").astype(np.int64)[r]
    names = pa.array([f"c{block * n + j:07d}" for j in range(values.shape[0])])
    company = pa.DictionaryArray.from_arrays(pa.array(c.astype(np.int32)), names)
    one = pa.array(np.zeros(c.size, dtype=np.int32))
    table = pa.table({
        "company": company, "company_name": company,
        "metric": pa.DictionaryArray.from_arrays(one, pa.array(["employees"])),
        "source": pa.DictionaryArray.from_arrays(one, pa.array(["synthetic"])),
        "as_of": pa.array(day.astype(np.int32), type=pa.int32()).cast(pa.date32()),
        "value": pa.array(np.rint(values[c, r]).astype(np.int64)),
        "collected_at": pa.array((day + 1) * 86_400_000_000, type=pa.int64())
        .cast(pa.timestamp("us", tz="UTC")),
    }).cast(schema())
    years = day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    for y in np.unique(years):
        at = np.flatnonzero(years == y)
        out = Path(folder) / f"year={y}"
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(pa.array(at)), out / f"part-{block:05d}.parquet")
    return int(c.size), gen
