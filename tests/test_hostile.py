"""A hostile corpus: every file, flag and config a careless user or a faulty provider sends.

Each case runs the real CLI entry point in a fresh folder and asserts, for that one
input: the exit code, the words the error must say (file, line, field, why), that no
traceback is printed, that the error is one line per problem, that nothing partial is
written (the store holds exactly the rows a correct import gives), and that a secret
pasted where it does not belong is never repeated in any output.

Cases are data, not code: adding one is adding a row to a table.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tracker.cli import main
from tracker.store import Store

H = "company,date,count\n"
ROW = "Apple,2022-10-10,5\n"
SECRET = "sk_live_Qm9vYmFyQmF6UXV4MTIzNDU2Nzg5"


def _zip(**members: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


#: a gzip whose end (and CRC) was lost, as an interrupted download leaves it
_BIG = H + "".join(f"Company {i},2022-10-10,{i + 1}\n" for i in range(20_000))
TRUNCATED_GZ = _gz(_BIG)[: len(_gz(_BIG)) // 2]
_MONTHLY = '{"name": "Acme", "employee_count_by_month": {"2022-01": 5, "2022-02": 6}}\n'


@dataclass(frozen=True)
class Case:
    """One hostile input and everything the tool must do with it."""

    id: str
    argv: tuple[str, ...]
    exit: int
    says: tuple[str, ...] = ()
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    config: str | bytes | None = None
    #: observations the store must hold afterwards (None: no database is involved)
    rows: int | None = 0
    #: a value that must never appear (not even 8 characters of it) in any output
    secret: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


def imp(*files: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return ("--db", "sqlite:///db.sqlite", "import", *extra, *files)


BAD = "1 bad row(s); nothing from this file was written"

CASES: list[Case] = [
    # --- files that are not (usable) CSVs -----------------------------------------
    Case("empty-file", imp("a.csv"), 3, ("a.csv", "empty"), {"a.csv": ""}),
    Case("only-a-bom", imp("a.csv"), 3, ("a.csv", "empty"), {"a.csv": "\ufeff"}),
    Case("only-blank-lines", imp("a.csv"), 3, ("a.csv", "empty"), {"a.csv": "\n\n\n"}),
    Case("header-only", imp("a.csv"), 3, ("a.csv", "no data rows"), {"a.csv": H}),
    Case("no-date-column", imp("a.csv"), 3, ("a.csv", "no date column", "--date-col"),
         {"a.csv": "company,count\nApple,5\n"}),
    Case("no-count-column", imp("a.csv"), 3, ("a.csv", "no count column", "--count-col"),
         {"a.csv": "company,date\nApple,2022-10-10\n"}),
    Case("misspelt-count-header", imp("a.csv"), 3,
         ("a.csv", "no count column", "'cuont' looks like a misspelt 'count'"),
         {"a.csv": "company,date,cuont\nApple,2022-10-10,5\n"}),
    Case("misspelt-company-header", imp("a.csv"), 3,
         ("a.csv", "'compnay' looks like a misspelt 'company'", "--company-col"),
         {"a.csv": "compnay,date,count\nApple,2022-10-10,5\n"}),
    Case("misspelt-date-header", imp("a.csv"), 3,
         ("a.csv", "no date column", "'dat' looks like a misspelt 'date'"),
         {"a.csv": "company,dat,count\nApple,2022-10-10,5\n"}),
    Case("named-column-missing", imp("a.csv", extra=("--company-col", "org")), 3,
         ("a.csv", "no column 'org'", "columns: company, date, count"), {"a.csv": H + ROW}),
    Case("not-a-thinknum-file", imp("a.csv", extra=("--format", "thinknum")), 3,
         ("a.csv", "not a Thinknum file"), {"a.csv": H + ROW}),
    Case("missing-file", imp("nope.csv"), 3, ("nope.csv", "no such file")),
    Case("a-folder", imp("sub"), 3, ("sub", "folder"), {"sub/x.csv": H + ROW}),
    Case("excel-workbook", imp("a.xlsx"), 3, ("a.xlsx", "Excel", "CSV"),
         {"a.xlsx": _zip(**{"[Content_Types].xml": "<x/>", "xl/workbook.xml": "<x/>"})}),
    Case("zip-of-two-files", imp("a.zip"), 3, ("a.zip", "a.csv", "b.csv"),
         {"a.zip": _zip(**{"a.csv": H + ROW, "b.csv": H + ROW})}),
    Case("binary-garbage", imp("a.csv"), 3, ("a.csv", "not UTF-8"),
         {"a.csv": bytes(range(256)) * 4}),
    # --- delimiters, quoting, ragged rows -----------------------------------------
    Case("semicolon-delimited", imp("a.csv"), 0, ("a.csv", "1 new"),
         {"a.csv": "company;date;count\nApple;2022-10-10;5\n"}, rows=1),
    Case("tab-delimited", imp("a.tsv"), 0, ("a.tsv", "1 new"),
         {"a.tsv": "company\tdate\tcount\nApple\t2022-10-10\t5\n"}, rows=1),
    Case("unclosed-quote", imp("a.csv"), 3, ("a.csv:4", "quote"),
         {"a.csv": H + ROW + "Amazon,2022-10-10,6\n" + '"Binance,2022-10-10,7\n'}),
    Case("too-many-fields", imp("a.csv"), 3, ("a.csv:3", "more fields than the header's 3"),
         {"a.csv": H + ROW + "Amazon,2022-10-10,6,9\n"}),
    Case("too-few-fields", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "''"),
         {"a.csv": H + "Apple,2022-10-10\n"}),
    Case("duplicated-header", imp("a.csv"), 3, ("a.csv", "count"),
         {"a.csv": "company,date,count,count\nApple,2022-10-10,5,6\n"}),
    # --- dates ----------------------------------------------------------------------
    Case("us-date", imp("a.csv"), 3, (BAD, "a.csv:2", "column 'date'", "10/11/2022"),
         {"a.csv": H + "Apple,10/11/2022,5\n"}),
    Case("excel-serial-date", imp("a.csv"), 3, ("a.csv:2", "column 'date'", "44845"),
         {"a.csv": H + "Apple,44845,5\n"}),
    Case("february-30", imp("a.csv"), 3, ("a.csv:2", "column 'date'", "2022-02-30"),
         {"a.csv": H + "Apple,2022-02-30,5\n"}),
    Case("date-too-old", imp("a.csv"), 3, ("a.csv:2", "column 'date'", "supported dates"),
         {"a.csv": H + "Apple,1600-01-01,5\n"}),
    Case("empty-date", imp("a.csv"), 3, ("a.csv:2", "column 'date'"),
         {"a.csv": H + "Apple,,5\n"}),
    # --- counts ---------------------------------------------------------------------
    Case("negative-count", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "'-5'"),
         {"a.csv": H + "Apple,2022-10-10,-5\n"}),
    Case("fractional-count", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "'12.5'"),
         {"a.csv": H + "Apple,2022-10-10,12.5\n"}),
    Case("decimal-comma", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "'12,5'"),
         {"a.csv": H + 'Apple,2022-10-10,"12,5"\n'}),
    Case("bad-thousands-groups", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "'1,23'"),
         {"a.csv": H + 'Apple,2022-10-10,"1,23"\n'}),
    Case("scientific-notation", imp("a.csv"), 3,
         ("a.csv:2", "column 'count'", "'1.25E+06'", "scientific"),
         {"a.csv": H + "Apple,2022-10-10,1.25E+06\n"}),
    Case("nan-count", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "'NaN'"),
         {"a.csv": H + "Apple,2022-10-10,NaN\n"}),
    Case("infinite-count", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "'inf'"),
         {"a.csv": H + "Apple,2022-10-10,inf\n"}),
    Case("n/a-count", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "'n/a'"),
         {"a.csv": H + "Apple,2022-10-10,n/a\n"}),
    Case("count-with-words", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "5 employees"),
         {"a.csv": H + "Apple,2022-10-10,5 employees\n"}),
    Case("count-too-large", imp("a.csv"), 3, ("a.csv:2", "column 'count'", "too large"),
         {"a.csv": H + "Apple,2022-10-10,99999999999999999999999\n"}),
    Case("empty-count", imp("a.csv"), 3, ("a.csv:3", "column 'count'"),
         {"a.csv": H + ROW + "Amazon,2022-10-10,\n"}),
    Case("one-bad-row-among-good", imp("a.csv"), 3, (BAD, "a.csv:4", "'x'"),
         {"a.csv": H + ROW + "Amazon,2022-10-10,6\nBinance,2022-10-10,x\n"}),
    Case("skip-bad-keeps-the-good", imp("a.csv", extra=("--skip-bad",)), 0,
         ("a.csv", "2 new", "1 rejected", "a.rejects.csv"),
         {"a.csv": H + ROW + "Amazon,2022-10-10,6\nBinance,2022-10-10,x\n"}, rows=2),
    # --- names ----------------------------------------------------------------------
    Case("empty-company", imp("a.csv"), 3, ("a.csv:2", "column 'company'", "empty"),
         {"a.csv": H + ",2022-10-10,5\n"}),
    Case("blank-company", imp("a.csv"), 3, ("a.csv:2", "column 'company'", "empty"),
         {"a.csv": H + "   ,2022-10-10,5\n"}),
    Case("nul-in-name", imp("a.csv"), 3, ("a.csv:2", "column 'company'", "control character"),
         {"a.csv": H + "App\x00le,2022-10-10,5\n"}),
    Case("terminal-escape-in-name", imp("a.csv"), 3,
         ("a.csv:2", "column 'company'", "control character"),
         {"a.csv": H + "Apple\x1b[2J\x1b[31m,2022-10-10,5\n"}),
    Case("name-too-long", imp("a.csv"), 3, ("a.csv:2", "column 'company'", "200 characters"),
         {"a.csv": H + "A" * 201 + ",2022-10-10,5\n"}),
    Case("metric-too-long", imp("a.csv"), 3, ("a.csv:2", "column 'metric'", "64 characters"),
         {"a.csv": "company,date,count,metric\nApple,2022-10-10,5," + "m" * 201 + "\n"}),
    Case("conflicting-duplicates", imp("a.csv"), 3, ("a.csv:2", "a.csv:3", "conflicting"),
         {"a.csv": H + "Apple,2022-10-10,5\nApple,2022-10-10,6\n"}),
    Case("two-spellings-one-company", imp("a.csv"), 3, ("a.csv", "Apple Inc.", "Apple, Inc"),
         {"a.csv": H + 'Apple Inc.,2022-10-10,5\n"Apple, Inc",2022-10-10,6\n'}),
    Case("formula-names-import-as-written", imp("a.csv"), 0, ("a.csv", "4 new"),
         {"a.csv": H + '"=HYPERLINK(""http://x"",""y"")",2022-10-10,5\n'
          "@SUM(A1),2022-10-10,6\n+cmd|' /C calc'!A0,2022-10-10,7\n-2+3,2022-10-10,8\n"},
         rows=4),
    Case("markup-names-import-as-written", imp("a.csv"), 0, ("a.csv", "3 new"),
         {"a.csv": H + "<script>alert(1)</script>,2022-10-10,5\n"
          "<!channel> <http://evil.example|x>,2022-10-10,6\n\"a\"\"b\",2022-10-10,7\n"},
         rows=3),
    # --- wide files -----------------------------------------------------------------
    Case("wide-bad-cell", imp("w.csv"), 3, ("w.csv:3", "column 'Apple'", "'oops'"),
         {"w.csv": "date,Apple,Amazon\n2022-10-10,5,6\n2022-10-11,oops,7\n"}),
    Case("wide-unnamed-column", imp("w.csv"), 3, ("w.csv", "column 2", "no name"),
         {"w.csv": "date,,Apple\n2022-10-10,5,6\n"}),
    Case("wide-repeated-day", imp("w.csv"), 3, ("w.csv:2", "w.csv:3", "conflicting"),
         {"w.csv": "date,Apple\n2022-10-10,5\n2022-10-10,6\n"}),
    # --- encodings ------------------------------------------------------------------
    Case("latin-1", imp("a.csv"), 3, ("a.csv:2", "not UTF-8", "UTF-8"),
         {"a.csv": (H + "Nestlé,2022-10-10,5\n").encode("latin-1")}),
    Case("cp1252-on-a-later-line", imp("a.csv"), 3, ("a.csv:4", "not UTF-8"),
         {"a.csv": (H + ROW + "Amazon,2022-10-10,6\n").encode()
          + "Caf\u00e9 \u201cX\u201d,2022-10-10,7\n".encode("cp1252")}),
    Case("utf-16-with-bom", imp("a.csv"), 0, ("a.csv", "1 new"),
         {"a.csv": (H + "Nestlé,2022-10-10,5\n").encode("utf-16")}, rows=1),
    Case("utf-8-bom-and-crlf", imp("a.csv"), 0, ("a.csv", "1 new"),
         {"a.csv": ("\ufeff" + H + ROW).replace("\n", "\r\n").encode()}, rows=1),
    # --- compression ----------------------------------------------------------------
    Case("plain-text-named-gz", imp("a.csv.gz"), 0, ("a.csv.gz", "1 new"),
         {"a.csv.gz": H + ROW}, rows=1),
    Case("far-too-many-fields", imp("a.csv"), 3, ("a.csv:3", "5 fields", "header has 3"),
         {"a.csv": H + ROW + "Amazon,2022-10-10,6,7,8\n"}),
    Case("truncated-gz", imp("a.csv.gz"), 3, ("a.csv.gz", "cut off"),
         {"a.csv.gz": TRUNCATED_GZ}),
    Case("gz-with-trailing-garbage", imp("a.csv.gz"), 3, ("a.csv.gz", "gzip"),
         {"a.csv.gz": _gz(H + ROW) + b"garbage"}),
    Case("gzip-named-csv", imp("a.csv"), 0, ("a.csv", "1 new"), {"a.csv": _gz(H + ROW)},
         rows=1),
    Case("empty-gz", imp("a.csv.gz"), 3, ("a.csv.gz", "empty"), {"a.csv.gz": _gz("")}),
    # --- JSON -----------------------------------------------------------------------
    Case("json-syntax", imp("a.json"), 3, ("a.json:1", "not valid JSON"),
         {"a.json": "{not json"}),
    Case("json-a-string", imp("a.json"), 3, ("a.json", "list of company records"),
         {"a.json": '"hello"'}),
    Case("json-records-not-objects", imp("a.json"), 3, ("a.json:1", "record 1", "a number"),
         {"a.json": "[1, 2, 3]"}),
    Case("json-bad-month", imp("a.json"), 3, ("a.json:1", "2022-13"),
         {"a.json": '[{"name": "A", "employee_count_by_month": {"2022-13": 5}}]'}),
    Case("json-count-text", imp("a.json"), 3, ("a.json:1", "column 'count'", "'abc'"),
         {"a.json": '[{"name": "A", "employee_count_by_month": {"2022-01": "abc"}}]'}),
    Case("jsonl-bad-second-line", imp("a.jsonl"), 3, ("a.jsonl:2", "not valid JSON"),
         {"a.jsonl": _MONTHLY + "{oops\n"}),
    Case("truncated-json-gz", imp("a.json.gz"), 3, ("a.json.gz", "cut off"),
         {"a.json.gz": _gz("[" + ",".join([_MONTHLY] * 2000) + "]")[:300]}),
    # --- several files: each one transaction ------------------------------------------
    Case("second-file-bad-first-kept", imp("a.csv", "b.csv"), 3,
         ("a.csv: 1 rows", "b.csv:2", "column 'count'"),
         {"a.csv": H + ROW, "b.csv": H + "Amazon,2022-10-10,x\n"}, rows=1),
    # --- configuration --------------------------------------------------------------
    Case("toml-syntax", ("status",), 3, ("config.toml", "not valid TOML", "line 1"),
         config="[schedule\n", rows=None),
    Case("config-not-utf8", ("status",), 3, ("config.toml", "cannot read"),
         config="[report]\noutput_dir = 'r\u00e9ports'\n".encode("latin-1"), rows=None),
    Case("config-is-a-folder", ("--config", ".", "status"), 3, ("folder",), rows=None),
    Case("unknown-section", ("status",), 3, ("config.toml", "unknown key 'shedule'"),
         config="[shedule]\ndaily_at = '07:00'\n", rows=None),
    Case("unknown-detect-key", ("status",), 3, ("config.toml", "unknown key 'detect.treshold'"),
         config="[detect]\ntreshold = 5\n", rows=None),
    Case("daily-at-a-number", ("status",), 3, ("config.toml", "schedule.daily_at", "HH:MM"),
         config="[schedule]\ndaily_at = 7\n", rows=None),
    Case("daily-at-25-oclock", ("status",), 3, ("config.toml", "schedule.daily_at"),
         config="[schedule]\ndaily_at = '25:00'\n", rows=None),
    Case("stale-days-a-string", ("status",), 3, ("config.toml", "run.stale_days"),
         config="[run]\nstale_days = '3'\n", rows=None),
    Case("enabled-yes", ("status",), 3, ("config.toml", "report.enabled"),
         config="[report]\nenabled = 'yes'\n", rows=None),
    Case("grace-true", ("status",), 3, ("config.toml", "schedule.misfire_grace_hours"),
         config="[schedule]\nmisfire_grace_hours = true\n", rows=None),
    Case("unknown-timezone", ("status",), 3, ("config.toml", "schedule.timezone", "Mars"),
         config="[schedule]\ntimezone = 'Mars/Olympus'\n", rows=None),
    Case("sources-not-a-table", ("status",), 3, ("config.toml", "'sources'"),
         config="sources = 5\n", rows=None),
    Case("unknown-source-type", ("status",), 3, ("config.toml", "sources.x.type", "ftp"),
         config="[sources.x]\ntype = 'ftp'\n", rows=None),
    Case("reserved-key", ("status",), 3, ("config.toml", "unknown key 'base_dir'"),
         config="base_dir = '/'\n", rows=None),
    # --- pasted secrets -------------------------------------------------------------
    Case("secret-pasted-in-header-env", ("--db", "sqlite:///db.sqlite", "collect"), 3,
         ("sources.x", "header_env.Authorization", "environment variable"),
         config="[sources.x]\ntype = 'http_json'\nurl = 'http://127.0.0.1:9/{company}'\n"
                f"value_path = 'n'\nheader_env = {{Authorization = '{SECRET}'}}\n",
         rows=None, secret=SECRET),
    Case("secret-pasted-in-params-env", ("--db", "sqlite:///db.sqlite", "collect"), 3,
         ("sources.x", "params_env.key", "environment variable"),
         config="[sources.x]\ntype = 'http_json'\nurl = 'http://127.0.0.1:9/{company}'\n"
                f"value_path = 'n'\nparams_env = {{key = '{SECRET}'}}\n",
         rows=None, secret=SECRET),
    Case("password-in-database-url", ("status",), 3, ("database", "127.0.0.1:9", "***"),
         config=f"[database]\nurl = 'postgresql+psycopg://u:{SECRET}@127.0.0.1:9/db'\n",
         rows=None, secret=SECRET),
    Case("password-in-database-env", ("status",), 3,
         ("database URL", "***", "unsupported dialect 'mysql'", "PostgreSQL"),
         env={"TRACKER_DATABASE_URL": f"mysql://u:{SECRET}@127.0.0.1:9/db"},
         rows=None, secret=SECRET),
    Case("unset-secret-variable", ("--db", "sqlite:///db.sqlite", "collect"), 3,
         ("sources.x", "ACME_TOKEN", "not set"),
         config="[sources.x]\ntype = 'http_json'\nurl = 'http://127.0.0.1:9/{company}'\n"
                "value_path = 'n'\nheader_env = {Authorization = 'ACME_TOKEN'}\n",
         rows=None),
    # --- flags ----------------------------------------------------------------------
    Case("bad-collected-at", imp("a.csv", extra=("--collected-at", "yesterday")), 3,
         ("--collected-at", "yesterday"), {"a.csv": H + ROW}),
    Case("bad-format-flag", imp("a.csv", extra=("--format", "xml")), 3,
         ("Invalid value for '--format'", "xml"),
         {"a.csv": H + ROW}, rows=None),
]


def _windows(secret: str, size: int = 8) -> list[str]:
    return [secret[i:i + size] for i in range(len(secret) - size + 1)]


def _stored_rows(folder: Path) -> int:
    db = folder / "db.sqlite"
    if not db.exists():
        return 0
    store = Store(f"sqlite:///{db}")
    try:
        return len(store.observations())
    finally:
        store.close()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.config is not None:
        data = case.config if isinstance(case.config, bytes) else case.config.encode()
        (tmp_path / "config.toml").write_bytes(data)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)

    code = main(list(case.argv))
    out, err = capsys.readouterr()

    assert "Traceback" not in out + err, err
    assert code == case.exit, f"exit {code}\nstdout: {out}\nstderr: {err}"
    shown = out + err
    for words in case.says:
        assert words in shown, f"{words!r} not in:\n{shown}"
    if code == 3 and not err.startswith("Usage:"):  # click's usage errors keep their form
        lines = err.strip().splitlines()
        assert lines and lines[0].startswith("error: "), err
        # one line per problem: the first says what failed, any further lines list
        # the problems, each naming its own place
        assert all(line.startswith("  ") for line in lines[1:]), err
    if case.rows is not None:
        assert _stored_rows(tmp_path) == case.rows
    if case.secret is not None:
        leaked = [w for w in _windows(case.secret) if w in shown]
        for path in tmp_path.rglob("*"):
            if path.is_file() and path.name != "config.toml":
                data = path.read_bytes().decode("latin-1")
                leaked += [w for w in _windows(case.secret) if w in data]
        assert not leaked, f"secret fragments shown: {leaked[:3]}"


def test_the_corpus_is_large_and_every_case_is_distinct() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.argv, tuple(c.files.items()), c.config) for c in CASES}) == len(CASES)


def test_a_rejects_file_fixed_by_hand_imports_back_under_the_same_names(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The rejects file quotes formula-like names for spreadsheets; importing it back
    (its line and reason columns included) must give the names as first written."""
    import csv

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.csv").write_text(H + "@evil,2022-10-10,x\n=1+2,2022-10-10,y\nok,2022-10-10,4\n")
    assert main(list(imp("a.csv", extra=("--skip-bad",)))) == 0
    rows = list(csv.reader((tmp_path / "a.rejects.csv").open(encoding="utf-8")))
    assert rows[0] == ["line", "company", "date", "count", "reason"]
    assert [r[1] for r in rows[1:]] == ["'@evil", "'=1+2"]
    for i, row in enumerate(rows[1:], start=1):
        row[3] = str(10 + i)
    with (tmp_path / "fixed.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    capsys.readouterr()
    assert main(list(imp("fixed.csv"))) == 0
    capsys.readouterr()
    assert main(["--db", "sqlite:///db.sqlite", "companies", "--format", "json"]) == 0
    import json

    names = {c["name"]: c["last_value"] for c in json.loads(capsys.readouterr().out)}
    assert names == {"@evil": 11, "=1+2": 12, "ok": 4}
