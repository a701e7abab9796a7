"""Shared fixtures: real SQLite files, a real PostgreSQL database per test.

PostgreSQL comes from TRACKER_TEST_POSTGRES_URL (``.ci/run`` starts a throwaway
cluster and sets it). Without it the PostgreSQL cases are skipped with a visible
reason, except under CI, where a missing server is a failure: a green CI must
mean the PostgreSQL path was exercised.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tracker.store import Store
from tracker.workspace import Workspace

PG_ENV = "TRACKER_TEST_POSTGRES_URL"
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may pick up a developer's database URL from the environment."""
    monkeypatch.delenv("TRACKER_DATABASE_URL", raising=False)


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url and os.environ.get("CI"):
        pytest.fail(f"{PG_ENV} is not set under CI: .ci/run must start PostgreSQL")
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin = _pg_admin_url()
    if not admin:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run)")
    name = f"tracker_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A LocalCluster of two worker processes for the module (this checkout on their
    path), for the tests of ``engine = "dask"``."""
    from tests.helpers import python_env

    distributed = pytest.importorskip("distributed")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = python_env()["PYTHONPATH"]
    try:
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster:
            yield cluster.scheduler_address
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tracker.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a test once on a SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sample_ws(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Open a workspace on ``url`` with the bundled 2022 sample imported."""
    from tracker.config import Settings
    from tracker.ingest import import_file

    opened: list[Workspace] = []

    def _open(url: str) -> Workspace:
        store = Store(url)
        import_file(store, SAMPLE)
        opened.append(Workspace(Settings(base_dir=tmp_path), store))
        return opened[-1]

    yield _open
    for ws in opened:
        ws.close()


@pytest.fixture
def workspaces() -> Iterator[list[Workspace]]:
    """Workspaces opened by a test (see helpers.open_ws), closed after it."""
    opened: list[Workspace] = []
    yield opened
    for ws in opened:
        ws.close()


@pytest.fixture
def write_csv(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write text (or bytes) to a file in tmp_path and return its path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")
        return path

    return _write
