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
