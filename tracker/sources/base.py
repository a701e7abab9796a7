"""The source plugin seam.

A source is deliberately small: a ``name``, a pydantic ``Settings`` model that
validates its ``[sources.NAME]`` table, and ``fetch(companies, day)``, which yields
:class:`~tracker.records.Observation` for what it found and
:class:`~tracker.records.Failure` for what it could not get. Yielding failures
instead of raising keeps one bad company from stopping the others, and lets the
collector account for every company in its run record.

Third-party sources register under the entry-point group ``tracker.sources``; the
built-ins register the same way in this project's pyproject.toml.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, field_validator

from tracker.config import SETTINGS_CONFIG, validate_table
from tracker.errors import SourceError
from tracker.metrics import metric_problem
from tracker.records import DEFAULT_METRIC, CompanyRef, Failure, Observation

if TYPE_CHECKING:
    # imported where frames are built: validating a config loads every configured
    # source's module, and `tracker status` must start without pandas
    import pandas as pd

log = logging.getLogger(__name__)


class SourceSettings(BaseModel):
    """Settings every source accepts; subclasses add their own fields.

    Strict like every settings model (:data:`tracker.config.SETTINGS_CONFIG`): a
    misspelt key is an error instead of a silent default, and a value of the wrong
    TOML type is an error instead of a guess (``enabled = 1`` is not ``true``).
    """

    model_config = SETTINGS_CONFIG

    type: str
    enabled: bool = True
    #: The series this source's counts belong to: ``employees``, or a role segment
    #: such as ``employees:security`` (see :mod:`tracker.metrics`).
    metric: str = DEFAULT_METRIC
    companies: list[str] | None = None

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        problem = metric_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


@dataclass
class SourceContext:
    """What the collector lends a source: where config lives and durable state.

    ``state`` is a small key -> value store persisted by the collector between runs
    (``csv_folder`` keeps the content hashes of files already imported there).
    """

    base_dir: Path
    user_agent: str = "tracker"
    state: dict[str, str] = field(default_factory=dict)


class Source(ABC):
    """Base class of every data source."""

    name: ClassVar[str]
    Settings: ClassVar[type[SourceSettings]] = SourceSettings
    #: False for a source that reads what it is given (files) and ignores the
    #: company list: the collector then does not read a million companies for it
    uses_companies: ClassVar[bool] = True

    def __init__(self, instance: str, settings: SourceSettings, context: SourceContext) -> None:
        self.instance = instance
        self.settings = settings
        self.context = context

    @classmethod
    def from_config(cls, instance: str, raw: dict[str, Any], context: SourceContext) -> Source:
        """Validate a raw config table, as strictly as load_settings did, and build the source.

        Pydantic errors bubble up; ``load_settings`` reported them with the file first.
        """
        return cls(instance, validate_table(cls.Settings, raw), context)

    @abstractmethod
    def fetch(self, companies: Sequence[CompanyRef], day: date) -> Iterable[Observation | Failure]:
        """Yield what this source knows for ``companies`` on ``day``."""

    def fetch_frame(
        self, companies: Sequence[CompanyRef], day: date
    ) -> tuple[pd.DataFrame, list[Failure]]:
        """Bulk form of :meth:`fetch`, which the collector calls.

        Columns: company (id or name as the source spells it), metric, source, as_of,
        value. Sources that read whole files override this to stay vectorized; the
        default collects :meth:`fetch` so small plugins only write ``fetch``.
        """
        import pandas as pd

        found: list[Observation] = []
        failures: list[Failure] = []
        for item in self.fetch(companies, day):
            (failures if isinstance(item, Failure) else found).append(item)  # type: ignore[arg-type]
        frame = pd.DataFrame({
            "company": [o.company for o in found],
            "metric": [o.metric for o in found],
            "source": [o.source for o in found],
            "as_of": pd.to_datetime([o.as_of for o in found]),
            "value": pd.array([o.value for o in found], dtype="int64"),
        })
        return frame, failures

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release pooled connections; called once by the collector after a run."""


class PerCompanySource(Source):
    """A source that asks one question per company, concurrently.

    Subclasses implement :meth:`fetch_company`; a :class:`SourceError` it raises
    becomes a :class:`Failure` for that company only.
    """

    workers: int = 4

    @abstractmethod
    def fetch_company(self, company: CompanyRef, day: date) -> Observation | list[Observation]:
        """Return the observation for one company or raise a :class:`SourceError`.

        A list is several series read from one answer (``http_json``'s ``metrics``:
        a company's count and its role segments in one payload).
        """

    def _one(self, company: CompanyRef, day: date) -> Observation | list[Observation] | Failure:
        try:
            return self.fetch_company(company, day)
        except SourceError as exc:
            return Failure(self.instance, company.id, str(exc), exc.retriable)
        except Exception as exc:  # a plugin bug for one company must not end the run
            log.exception("source %s failed unexpectedly for %s", self.instance, company.id)
            from tracker.sources.http_values import REDACTOR  # a plugin may echo a key

            return Failure(self.instance, company.id, REDACTOR(f"unexpected error: {exc!r}"))

    def fetch(self, companies: Sequence[CompanyRef], day: date) -> Iterable[Observation | Failure]:
        workers = max(1, min(self.workers, len(companies) or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=self.instance) as pool:
            for found in pool.map(lambda c: self._one(c, day), companies):
                if isinstance(found, list):
                    yield from found
                else:
                    yield found
