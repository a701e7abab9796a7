"""``csv_folder``: import the CSV files dropped into a folder, each version once.

Providers and colleagues deliver headcounts as files; this source turns "drop a
file here" into collection. A file is remembered by the SHA-256 of its content, so
a file that is re-delivered unchanged is skipped and a corrected file is read
again (its changed values become revisions). The hashes are kept in the store's
source state and saved in the same transaction as the rows, so a crash never
marks a file as imported without its data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from tracker.errors import InputError
from tracker.records import CompanyRef, Failure, Observation
from tracker.sources.base import Source, SourceSettings

if TYPE_CHECKING:
    # pandas and the CSV reader are imported when files are read: validating a
    # config loads this module, and `tracker status` must start without pandas
    import pandas as pd


class CsvFolderSettings(SourceSettings):
    path: str = Field(description="Folder to watch, relative to config.toml")
    pattern: str = Field("*.csv*", description="Glob of files to import (.csv and .csv.gz)")
    recursive: bool = Field(False, description="Also look in sub-folders")
    layout: Literal["auto", "long", "wide", "thinknum"] = "auto"
    company_col: str | None = None
    date_col: str | None = None
    count_col: str | None = None
    source: str | None = Field(
        None, description="Source name for rows without a source column (default: this name)"
    )
    skip_bad: bool = Field(False, description="Import good rows of a file with bad ones")


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CsvFolderSource(Source):
    """Reads every new or changed file in a folder as one bulk frame."""

    name = "csv_folder"
    Settings = CsvFolderSettings
    settings: CsvFolderSettings
    accepts_zero = True  # files follow the import rules: counts are whole numbers >= 0
    uses_companies = False  # every row of a file names its company

    @property
    def folder(self) -> Path:
        path = Path(self.settings.path).expanduser()
        return path if path.is_absolute() else self.context.base_dir / path

    def pending(self) -> list[tuple[Path, str]]:
        """Files whose current content has not been imported yet, with their hashes."""
        glob = self.folder.rglob if self.settings.recursive else self.folder.glob
        files = sorted(p for p in glob(self.settings.pattern)
                       if p.is_file() and not p.name.endswith(".rejects.csv"))
        out = []
        for path in files:
            digest = file_hash(path)
            if self.context.state.get(self._key(path)) != digest:
                out.append((path, digest))
        return out

    def _key(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    def fetch(self, companies: Sequence[CompanyRef], day: date) -> Iterable[Observation | Failure]:
        frame, failures = self.fetch_frame(companies, day)
        yield from failures
        for row in frame.itertuples(index=False):
            yield Observation(row.company, row.as_of.date(), int(row.value), row.metric, row.source)

    def fetch_frame(
        self, companies: Sequence[CompanyRef], day: date
    ) -> tuple[pd.DataFrame, list[Failure]]:
        import pandas as pd

        from tracker.ingest.csvfile import MAX_SHOWN, parse

        if not self.folder.is_dir():
            return pd.DataFrame(), [Failure(self.instance, None,
                                            f"folder {self.folder} does not exist")]
        frames, failures = [], []
        for path, digest in self.pending():
            try:
                parsed = parse(
                    path, layout=self.settings.layout, company_col=self.settings.company_col,
                    date_col=self.settings.date_col, count_col=self.settings.count_col,
                    metric=None if self.settings.metric == "employees" else self.settings.metric,
                    source=self.settings.source,
                )
            except InputError as exc:
                failures.append(Failure(self.instance, None, str(exc)))
                continue
            if len(parsed.rejects) and not self.settings.skip_bad:
                shown = "; ".join(parsed.problems[:MAX_SHOWN])
                failures.append(Failure(
                    self.instance, None,
                    f"{path}: {len(parsed.rejects)} bad row(s), file not imported: {shown}",
                ))
                continue
            if len(parsed.rejects):
                failures.append(Failure(self.instance, None,
                                        f"{path}: skipped {len(parsed.rejects)} bad row(s)"))
            good = parsed.good.drop(columns=["line"])
            if self.settings.source is None and "source" not in _columns(path):
                good["source"] = self.instance
            frames.append(good)
            self.context.state[self._key(path)] = digest
        if not frames:
            return pd.DataFrame(columns=["company", "metric", "source", "as_of", "value"]), failures
        return pd.concat(frames, ignore_index=True), failures


def _columns(path: Path) -> set[str]:
    """Normalised header names, to know whether the file named its own source."""
    import pandas as pd

    return {c.strip().lower() for c in pd.read_csv(path, nrows=0).columns}
