"""The CLI through its real entry point: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"


def python_env() -> dict[str, str]:
    """The environment for a child Python that must import this checkout's tracker.

    Neither the console script on PATH nor an editable install elsewhere may stand
    in for the code under test, so the repository goes first on the path.
    """
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *([path] if path else [])])}


def tracker(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "tracker", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env=python_env())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped config and sample data, as a user would have it."""
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    (tmp_path / "data" / "samples").mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "data" / "samples" / SAMPLE.name)
    return tmp_path


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def test_help_lists_the_commands(project: Path) -> None:
    proc = tracker("--help", cwd=project)
    assert proc.returncode == 0
    for command in (
        "import",
        "companies",
        "show",
        "export",
        "collect",
        "run",
        "status",
        "plugins",
        "db",
    ):
        assert command in proc.stdout


def test_import_companies_show_export(project: Path) -> None:
    proc = tracker("import", str(SAMPLE), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "1,695 new" in proc.stdout
    again = tracker("import", str(SAMPLE), cwd=project)
    assert "0 new, 1,695 unchanged" in again.stdout
    assert (project / "data" / "tracker.db").exists()

    companies = tracker("companies", "--format", "json", cwd=project)
    rows = {r["id"]: r for r in json.loads(companies.stdout)}
    assert rows["apple"]["name"] == "Apple"
    assert rows["apple"]["first_day"] == "2022-06-01"
    assert rows["apple"]["last_day"] == "2022-12-31"

    show = tracker("show", "Apple", "--since", "2022-10-10", "--format", "csv", cwd=project)
    lines = show.stdout.splitlines()
    assert lines[0] == "as_of,source,value,change_pct"
    assert lines[1].startswith("2022-10-10,linkedin,576562")
    assert lines[2].startswith("2022-10-11,linkedin,284991,-50.5")

    out = project / "export.csv"
    exp = tracker("export", "--company", "binance", "-o", str(out), cwd=project)
    assert exp.returncode == 0
    text = out.read_text()
    assert text.startswith("company,metric,source,as_of,value,collected_at")
    assert "binance,employees,linkedin,2022-09-04,6102," in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "nosuchco"), "unknown company 'nosuchco'"),
        (("import", "missing.csv"), "missing.csv: no such file"),
        (("show", "apple", "--since", "yesterday"), "--since: 'yesterday' is not a date"),
        (("--bogus",), "No such option"),
        (("--config", "absent.toml", "companies"), "absent.toml does not exist"),
        (("--db", "nosuchdb://x", "companies"), "unsupported dialect"),
    ],
)
def test_user_mistakes_give_one_clear_line_and_exit_3(
    project: Path, args: tuple[str, ...], message: str
) -> None:
    proc = tracker(*args, cwd=project)
    assert proc.returncode == 3
    assert message in proc.stderr
    no_traceback(proc)


def test_bad_config_lists_problems(project: Path) -> None:
    (project / "config.toml").write_text("[detect]\nthreshhold = 3\n")
    proc = tracker("companies", cwd=project)
    assert proc.returncode == 3
    assert "unknown key 'detect.threshhold'" in proc.stderr
    no_traceback(proc)


def test_bad_import_file_exit_code_and_nothing_written(project: Path) -> None:
    bad = project / "bad.csv"
    bad.write_text("company,date,count\nApple,2022-01-01,5\nApple,2022-01-02,x\n")
    proc = tracker("import", str(bad), cwd=project)
    assert proc.returncode == 3
    assert f"{bad}:3: column 'count': value 'x'" in proc.stderr
    no_traceback(proc)
    listing = tracker("companies", "--format", "csv", cwd=project)
    assert listing.stdout.strip() == "id,name,first_day,last_day,observations,last_value"
    skip = tracker("import", str(bad), "--skip-bad", cwd=project)
    assert skip.returncode == 0
    assert "1 rejected" in skip.stdout and "bad.rejects.csv" in skip.stdout


def test_db_flag_and_upgrade(project: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    proc = tracker("--db", url, "db", "upgrade", cwd=project)
    assert proc.returncode == 0
    assert "upgraded from empty to revision" in proc.stdout
    again = tracker("--db", url, "db", "upgrade", cwd=project)
    assert "already at revision" in again.stdout


def test_plugins_lists_builtin_sources(project: Path) -> None:
    proc = tracker("plugins", "--format", "json", cwd=project)
    types = {p["type"]: p for p in json.loads(proc.stdout)}
    assert {"csv_folder", "http_json", "html_page", "pdl"} <= types.keys()
    assert types["csv_folder"]["distribution"] == "headcount-tracker"


def test_python_dash_m_works(project: Path) -> None:
    proc = tracker("--help", cwd=project)
    assert proc.returncode == 0
    assert "Usage" in proc.stdout


def test_plot_writes_a_png(project: Path) -> None:
    assert tracker("import", str(SAMPLE), cwd=project).returncode == 0
    out = project / "charts" / "apple.png"
    proc = tracker("plot", "apple", "--since", "2022-09-01", "-o", str(out), cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    default = tracker("plot", cwd=project)
    assert default.returncode == 0
    assert Path(default.stdout.strip()) == project / "reports" / "overview.png"
    bad = tracker("plot", "nosuchco", cwd=project)
    assert bad.returncode == 3 and "unknown company" in bad.stderr
    no_traceback(bad)


def test_historical_snapshots_with_collected_at(project: Path) -> None:
    first = project / "snap1.csv"
    first.write_text("company,date,count\nApple,2022-10-11,290000\n")
    second = project / "snap2.csv"
    second.write_text("company,date,count\nApple,2022-10-11,284991\n")
    assert tracker("import", str(first), "--collected-at", "2022-10-12T06:00:00Z",
                   cwd=project).returncode == 0
    assert tracker("import", str(second), "--collected-at", "2022-10-14",
                   cwd=project).returncode == 0
    then = tracker("show", "apple", "--known-at", "2022-10-13", "--format", "csv", cwd=project)
    assert then.stdout.splitlines()[1].startswith("2022-10-11,csv,290000")
    now = tracker("show", "apple", "--format", "csv", cwd=project)
    assert now.stdout.splitlines()[1].startswith("2022-10-11,csv,284991")
    bad = tracker("import", str(first), "--collected-at", "soon", cwd=project)
    assert bad.returncode == 3 and "--collected-at: 'soon' is not a timestamp" in bad.stderr
