"""Every file and CSV the tool writes: formula cells neutralized, writes atomic.

The CSV cases go through the real CLI (``tracker.cli.main``) and read the output
back with the ``csv`` module, cell by cell. The write failures are real ones: a
full tmpfs (when this container may mount one), a file-size limit set on a child
process (RLIMIT_FSIZE with SIGXFSZ ignored, so writes fail with EFBIG), a
read-only folder, and a path through a regular file. Each asserts one line on
stderr, exit code 3, the old file intact and no temporary file left behind.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import resource
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT, SAMPLE, python_env, sample_project, tracker, tracker_command

from tracker import output
from tracker.cli import main
from tracker.output import WriteError, csv_text, neutralize, staged, write_csv, write_file

REPORT_DAY = "2022-10-14"
FORMULA_NAME = '=HYPERLINK("http://x")'


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The shipped config and sample, with an absolute database path."""
    return sample_project(tmp_path)


def report_into(project: Path, folder: Path | str) -> None:
    """Point the project's ``[report] output_dir`` at ``folder``."""
    cfg = project / "config.toml"
    text = cfg.read_text(encoding="utf-8")
    assert 'output_dir = "reports"' in text
    cfg.write_text(text.replace('output_dir = "reports"', f'output_dir = "{folder}"'),
                   encoding="utf-8")


def one_error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` that looks like one of our temporary files."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") and
                  p.name.endswith(".tmp"))


# -- neutralizing cells ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
        ("Apple", "Apple"),
        ("a=b", "a=b"),
        ("'quoted", "'quoted"),
        ("", ""),
        # a number spelled as text is a number to a spreadsheet too: a rejected
        # count of -5 stays -5 so that it can be fixed and imported again
        ("-5", "-5"),
        ("-3.2", "-3.2"),
        ("+1e3", "+1e3"),
        (12, 12),
        (-3.2, -3.2),
        (None, None),
    ],
)
def test_neutralize(cell: object, written: object) -> None:
    assert neutralize(cell) == written


def test_csv_text_prefixes_text_cells_and_headers_but_leaves_numbers_alone() -> None:
    frame = pd.DataFrame({
        "name": ["=A1", "Plain", None, "@x"],
        "=header": ["-1-1", "+x", "ok", "\tz"],
        "count": [1, -2, 3, 4],
        "change_pct": [-3.2, 5.0, float("nan"), -0.5],
        "flag": [True, False, True, False],
        "label": pd.Series(["-x", None, "y", "=z"], dtype="string"),
        "kind": pd.Categorical(["=c", "d", "=c", "d"]),
    })
    text = csv_text(frame)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["name", "'=header", "count", "change_pct", "flag", "label", "kind"]
    assert rows[1] == ["'=A1", "'-1-1", "1", "-3.2", "True", "'-x", "'=c"]
    assert rows[2] == ["Plain", "'+x", "-2", "5.0", "False", "", "d"]
    assert rows[3] == ["", "ok", "3", "", "True", "y", "'=c"]
    assert rows[4] == ["'@x", "'\tz", "4", "-0.5", "False", "'=z", "d"]
    assert text == frame.assign(**{  # otherwise byte for byte what pandas writes
        "name": ["'=A1", "Plain", None, "'@x"], "=header": ["'-1-1", "'+x", "ok", "'\tz"],
        "label": ["'-x", None, "y", "'=z"], "kind": ["'=c", "d", "'=c", "d"],
    }).rename(columns={"=header": "'=header"}).to_csv(index=False)
    assert frame["name"].tolist()[0] == "=A1"  # the caller's frame is not changed


# -- the CLI's CSVs ---------------------------------------------------------------------

def test_companies_csv_neutralizes_a_formula_name_and_json_keeps_it(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project)
    data = write_rows(project / "names.csv", ["company", "date", "count"],
                      [[FORMULA_NAME, "2022-01-01", "10"], [FORMULA_NAME, "2022-01-02", "11"],
                       ["Plain Co", "2022-01-01", "5"]])
    code, _, err = cli(capsys, "import", str(data))
    assert code == 0, err
    code, out, err = cli(capsys, "companies", "--format", "csv")
    assert code == 0, err
    rows = {r["name"]: r for r in read_rows(out)}
    assert set(rows) == {"'" + FORMULA_NAME, "Plain Co"}
    assert rows["'" + FORMULA_NAME]["last_value"] == "11"
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows.values()
                   for cell in r.values())
    code, out, _ = cli(capsys, "companies", "--format", "json")
    assert {r["name"] for r in json.loads(out)} == {FORMULA_NAME, "Plain Co"}


def test_export_neutralizes_metric_and_source_to_stdout_and_file(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project)
    # a formula-like metric is refused at import (metric names are name[:segment]);
    # a source name may still be anything, so the export still neutralizes it
    refused = write_rows(project / "refused.csv", ["company", "date", "count", "metric"],
                         [["Acme", "2022-01-01", "100", "=cmd|' /C calc'!A0"]])
    code, _, err = cli(capsys, "import", str(refused))
    assert code == 3 and "refused.csv:2: column 'metric'" in err
    hostile = [("employees", "+src"), ("employees:security", "@SUM(A1)"), ("followers", "-src")]
    data = write_rows(project / "metrics.csv", ["company", "date", "count", "metric", "source"],
                      [["Acme", "2022-01-01", "100", m, s] for m, s in hostile])
    code, _, err = cli(capsys, "import", str(data))
    assert code == 0, err
    code, out, err = cli(capsys, "export")
    assert code == 0, err
    target = project / "export.csv"
    assert cli(capsys, "export", "-o", str(target))[0] == 0
    assert target.read_text(encoding="utf-8") == out
    rows = read_rows(out)
    assert sorted((r["metric"], r["source"]) for r in rows) == sorted(
        ("'" + m if m[0] in "=+-@" else m, "'" + s) for m, s in hostile)
    assert {r["value"] for r in rows} == {"100"} and {r["as_of"] for r in rows} == {"2022-01-01"}
    code, out, _ = cli(capsys, "export", "--format", "json")
    assert sorted((r["metric"], r["source"]) for r in json.loads(out)) == sorted(hostile)
    assert {r["value"] for r in json.loads(out)} == {100}


def test_alerts_csv_keeps_negative_changes_as_numbers(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project)
    assert cli(capsys, "import", str(SAMPLE))[0] == 0
    assert cli(capsys, "detect", "--full")[0] == 0
    code, out, err = cli(capsys, "alerts", "--format", "csv")
    assert code == 0, err
    drops = [r for r in read_rows(out) if r["kind"] == "drop"]
    assert drops and all(float(r["change_pct"]) < 0 for r in drops)  # "-50.5", not "'-50.5"
    code, out, _ = cli(capsys, "alerts", "--format", "json")
    assert sorted(r["change_pct"] for r in json.loads(out) if r["kind"] == "drop") == sorted(
        float(r["change_pct"]) for r in drops)


def test_rejects_file_neutralizes_the_raw_cells(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project)
    data = write_rows(project / "mixed.csv", ["company", "date", "count"],
                      [["Good Co", "2022-01-01", "5"], ["=1+2", "2022-01-01", "abc"],
                       ["@evil", "2022-01-02", "-5"], ["Fine", "2022-01-03", "=9*9"]])
    code, out, err = cli(capsys, "import", str(data), "--skip-bad")
    assert code == 0, err
    rejects = project / "mixed.rejects.csv"
    assert str(rejects) in out
    rows = read_rows(rejects.read_text(encoding="utf-8"))
    assert [(r["line"], r["company"], r["count"]) for r in rows] == [
        ("3", "'=1+2", "abc"), ("4", "'@evil", "-5"), ("5", "Fine", "'=9*9")]
    assert all(r["reason"].startswith("column ") for r in rows)
    assert leftovers(project) == []


# -- the atomic write ----------------------------------------------------------------

def test_write_file_replaces_whole_files_and_keeps_their_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    assert write_file(target, "first\n") == target
    old_umask = os.umask(0o027)
    os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~old_umask  # not mkstemp's 0600
    target.chmod(0o640)
    write_file(target, b"second\n")
    assert target.read_bytes() == b"second\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_file(link, "through the link")
    assert link.is_symlink() and real.read_text() == "through the link"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "out.csv", "real.txt"]


def test_write_csv_is_the_neutralizing_writer(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "deep" / "x.csv", pd.DataFrame({"a": ["=1"], "b": [-1.5]}),
                     parents=True)
    assert list(csv.reader(path.open(encoding="utf-8"))) == [["a", "b"], ["'=1", "-1.5"]]


def test_missing_folder_and_folder_in_the_way(tmp_path: Path) -> None:
    with pytest.raises(WriteError) as missing:
        write_file(tmp_path / "nope" / "out.csv", "x")
    assert str(missing.value) == (f"cannot write {tmp_path / 'nope' / 'out.csv'}: "
                                  f"the folder {tmp_path / 'nope'} does not exist")
    (tmp_path / "dir").mkdir()
    with pytest.raises(WriteError, match=r"cannot write .*dir: it is a folder$"):
        write_file(tmp_path / "dir", "x")
    (tmp_path / "file").write_text("I am a file")
    with pytest.raises(WriteError, match=r"cannot write .*file/sub/x\.png: .*file is not a folder"):
        write_file(tmp_path / "file" / "sub" / "x.png", b"x", parents=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file"]
    assert (tmp_path / "file").read_text() == "I am a file"


def test_a_staged_batch_is_all_or_nothing(tmp_path: Path) -> None:
    """One file of a batch failing leaves every file of the batch as it was."""
    (tmp_path / "a.png").write_bytes(b"old a")
    with pytest.raises(WriteError), staged() as stage:
        stage.write(tmp_path / "a.png", b"new a")
        stage.write(tmp_path / "b.png", b"new b")
        stage.write(tmp_path / "new" / "deeper" / "c.png", b"new c", parents=True)
        stage.write(tmp_path / "missing" / "index.html", b"new index")
    assert (tmp_path / "a.png").read_bytes() == b"old a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # folders it made: gone
    with pytest.raises(KeyError), staged() as stage:  # not only our own errors
        stage.write(tmp_path / "a.png", b"newer a")
        raise KeyError("a bug")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    assert (tmp_path / "a.png").read_bytes() == b"old a"
    with staged() as stage:
        stage.write(tmp_path / "a.png", b"new a")
        stage.write(tmp_path / "sub" / "b.png", b"new b", parents=True)
        assert (tmp_path / "a.png").read_bytes() == b"old a"  # nothing before the end
    assert (tmp_path / "a.png").read_bytes() == b"new a"
    assert (tmp_path / "sub" / "b.png").read_bytes() == b"new b"
    assert leftovers(tmp_path) == []


# -- real write failures through the CLI ------------------------------------------------

def _prepared(project: Path) -> Path:
    """A project whose store holds the sample and its alerts, so a report has charts."""
    for args in (("import", str(SAMPLE)), ("detect", "--full")):
        proc = tracker(*args, cwd=project)
        assert proc.returncode == 0, proc.stderr
    return project


def _old_report(folder: Path) -> dict[str, bytes]:
    """Yesterday's report files in ``folder``, which a failed write must leave alone."""
    day = folder / REPORT_DAY
    day.mkdir(parents=True, exist_ok=True)
    files = {"index.html": b"<html>the old report</html>", "apple.png": b"old png"}
    for name, data in files.items():
        (day / name).write_bytes(data)
    return files


def _assert_untouched(folder: Path, files: dict[str, bytes]) -> None:
    day = folder / REPORT_DAY
    assert sorted(p.name for p in day.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (day / name).read_bytes() == data
    assert leftovers(folder) == []


def _limited(limit: int):  # type: ignore[no-untyped-def]
    """A preexec_fn: files may not grow past ``limit`` bytes, and crossing it is EFBIG."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ignored survives exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def _mount(target: Path, size: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                           str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real file system that runs out of space."""
    disk = tmp_path / "disk"
    _mount(disk, "64k")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> None:
    """Use up every free block, as a log gone wild would."""
    with (disk / "filler").open("wb", buffering=0) as fh:
        try:
            while fh.write(b"\0" * 512):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot write to, holding an old report.

    chmod stops everyone but root; as root (containers, CI) the folder is a tmpfs
    remounted read-only instead, which stops root too (EROFS).
    """
    folder = tmp_path / "readonly"
    if os.geteuid() != 0:
        folder.mkdir()
        _old_report(folder)
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield folder
        finally:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(0o755)
        return
    _mount(folder, "1m")
    try:
        files = _old_report(folder)
        done = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
        assert files
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_report_on_a_full_disk_is_one_line_and_keeps_the_old_report(
    tiny_disk: Path, project: Path,
) -> None:
    files = _old_report(tiny_disk)
    _fill(tiny_disk)
    _prepared(project)
    proc = tracker("report", "--day", REPORT_DAY, "--output-dir", str(tiny_disk), cwd=project)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = one_error_line(proc.stderr)
    assert line.startswith(f"error: cannot write {tiny_disk / REPORT_DAY}/")
    assert line.endswith(": no space left on device")
    assert proc.stdout == ""
    (tiny_disk / "filler").unlink()
    _assert_untouched(tiny_disk, files)


def test_run_on_a_full_disk_is_one_summary_line_exit_3(tiny_disk: Path, project: Path) -> None:
    """`tracker run` records the failure and says it on its one stdout line."""
    report_into(project, tiny_disk)
    files = _old_report(tiny_disk)
    _fill(tiny_disk)
    proc = tracker("run", "--day", REPORT_DAY, cwd=project)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("UNKNOWN: run failed: cannot write ")
    assert lines[0].endswith(": no space left on device")
    (tiny_disk / "filler").unlink()
    _assert_untouched(tiny_disk, files)
    status = tracker("status", cwd=project)
    assert "failed" in status.stdout and "no space left on device" in status.stdout


def test_report_whose_page_cannot_be_written_writes_no_chart_either(project: Path) -> None:
    """The issue's case: charts fit, the page does not (here: a folder is in its way).

    The page used to be written unguarded, so this was a traceback, after the charts
    had already replaced yesterday's.
    """
    _prepared(project)
    out = project / "out"
    files = _old_report(out)
    (out / REPORT_DAY / "index.html").unlink()
    (out / REPORT_DAY / "index.html").mkdir()
    del files["index.html"]
    proc = tracker("report", "--day", REPORT_DAY, "--output-dir", str(out), cwd=project)
    assert proc.returncode == 3
    assert one_error_line(proc.stderr) == (
        f"error: cannot write {out / REPORT_DAY / 'index.html'}: it is a folder")
    assert sorted(p.name for p in (out / REPORT_DAY).iterdir()) == ["apple.png", "index.html"]
    assert (out / REPORT_DAY / "apple.png").read_bytes() == files["apple.png"]
    assert leftovers(out) == []


def test_report_past_a_file_size_limit_is_one_line(project: Path) -> None:
    """RLIMIT_FSIZE works without privileges: every chart is bigger than the limit.

    The limit (36 KB) is above SQLite's 32 KB shared-memory file, so the store still
    opens, and below the smallest chart (about 40 KB) of this day.
    """
    _prepared(project)
    out = project / "out"
    files = _old_report(out)
    env = {**python_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(tracker_command("report", "--day", REPORT_DAY, "--output-dir", str(out)),
                          cwd=project, capture_output=True, text=True, timeout=120, env=env,
                          preexec_fn=_limited(36_000))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    line = one_error_line(proc.stderr)
    assert line.startswith(f"error: cannot write {out / REPORT_DAY}/")
    assert line.endswith(".png: file too large")
    _assert_untouched(out, files)
    again = tracker("report", "--day", REPORT_DAY, "--output-dir", str(out), cwd=project)
    assert again.returncode == 0, again.stderr  # without the limit the same report is written
    assert (out / REPORT_DAY / "index.html").read_bytes() != files["index.html"]
    assert leftovers(out) == []


def test_export_past_a_file_size_limit_keeps_the_old_export(project: Path) -> None:
    _prepared(project)
    target = project / "export.csv"
    target.write_text("the old export\n")
    env = {**python_env(), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(tracker_command("export", "-o", str(target)), cwd=project,
                          capture_output=True, text=True, timeout=120, env=env,
                          preexec_fn=_limited(36_000))
    assert proc.returncode == 3, proc.stderr
    assert one_error_line(proc.stderr) == f"error: cannot write {target}: file too large"
    assert target.read_text() == "the old export\n"
    assert leftovers(project) == []


def test_report_and_export_into_a_read_only_folder(readonly_dir: Path, project: Path) -> None:
    files = {"index.html": b"<html>the old report</html>", "apple.png": b"old png"}
    _prepared(project)
    proc = tracker("report", "--day", REPORT_DAY, "--output-dir", str(readonly_dir), cwd=project)
    assert proc.returncode == 3
    line = one_error_line(proc.stderr)
    assert line.startswith(f"error: cannot write {readonly_dir / REPORT_DAY}/")
    assert line.endswith((": permission denied", ": read-only file system"))
    _assert_untouched(readonly_dir, files)
    target = readonly_dir / REPORT_DAY / "index.html"
    proc = tracker("export", "-o", str(target), cwd=project)
    assert proc.returncode == 3
    assert one_error_line(proc.stderr).startswith(f"error: cannot write {target}: ")
    _assert_untouched(readonly_dir, files)


def test_run_into_a_read_only_folder_is_one_summary_line(
    readonly_dir: Path, project: Path,
) -> None:
    files = {"index.html": b"<html>the old report</html>", "apple.png": b"old png"}
    report_into(project, readonly_dir)
    proc = tracker("run", "--day", REPORT_DAY, cwd=project)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stdout + proc.stderr and proc.stderr == ""
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("UNKNOWN: run failed: cannot write ")
    _assert_untouched(readonly_dir, files)


def test_run_whose_report_folder_is_a_file_is_one_summary_line(project: Path) -> None:
    """Works everywhere, root or not: no privilege lets a file hold a folder."""
    (project / "blocker").write_text("not a folder")
    report_into(project, "blocker/reports")
    proc = tracker("run", "--day", REPORT_DAY, cwd=project)
    assert proc.returncode == 3
    assert "Traceback" not in proc.stdout + proc.stderr and proc.stderr == ""
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    assert lines[0].startswith(f"UNKNOWN: run failed: cannot write {project / 'blocker'}/reports/")
    assert lines[0].endswith(f"{project / 'blocker'} is not a folder")
    assert (project / "blocker").read_text() == "not a folder"
    assert leftovers(project) == []


def test_export_to_a_missing_folder(project: Path) -> None:
    assert tracker("db", "upgrade", cwd=project).returncode == 0  # export reads a store
    proc = tracker("export", "-o", "no/such/out.csv", cwd=project)
    assert proc.returncode == 3
    assert one_error_line(proc.stderr) == (
        "error: cannot write no/such/out.csv: the folder no/such does not exist")
    assert not (project / "no").exists()


def test_module_has_one_writer() -> None:
    """Nothing in tracker writes a file except through tracker.output."""
    writer = re.compile(r"\.write_text\(|\.write_bytes\(|\.to_csv\(|\.to_json\([^)]*(path|file)"
                        r"|savefig\((?!buffer)|csv\.(Dict)?[wW]riter\(|open\([^)]*[\"'][wax]b?\+?[\"']")
    offenders = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
                 for path in sorted((ROOT / "tracker").rglob("*.py"))
                 if path != Path(output.__file__)
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if writer.search(line)]
    assert offenders == []
