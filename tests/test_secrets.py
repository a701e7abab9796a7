"""No secret is ever shown or stored, whatever a hostile or broken provider sends back.

A real local server echoes the API key in a body, a header, a redirect URL, a JSON
error, a payload value, a JSON key and a page title; the real CLI collects and runs
in a subprocess with the key only in its environment, logging everything at DEBUG to
a file. Then stdout, stderr, the log, the SQLite files, every table's text and the
HTML report are searched for ANY 8 consecutive characters of the key, so a key half
shown (clipped before it was redacted) or shown in another encoding is caught too.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import python_env
from httpfixtures import FakeHttpServer

#: Long, random, and with characters that URLs and JSON encode differently (+ / =),
#: so every written form of it keeps long runs of the raw key that the search finds.
#: It starts with digits, as a random key sometimes does (CI once drew one): "8HYyf..."
#: in a page's count parsed as the number 8 and a rest that no longer matched the key.
KEY = "8" + secrets.token_urlsafe(27) + "+/=" + secrets.token_urlsafe(27)
ENV = "TRACKER_TEST_API_KEY"
WINDOW = 8

#: Runs the real CLI with DEBUG logging to a file, as an operator debugging a run would.
CLI = (
    "import logging, sys\n"
    "logging.basicConfig(filename=sys.argv[1], level=logging.DEBUG,\n"
    "                    format='%(asctime)s %(levelname)s %(name)s: %(message)s')\n"
    "from tracker.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def leaks(text: str) -> list[str]:
    """Every 8-character piece of the key found in ``text``."""
    pieces = (KEY[i : i + WINDOW] for i in range(len(KEY) - WINDOW + 1))
    return [piece for piece in pieces if piece in text]


@pytest.fixture
def echoing() -> Iterator[FakeHttpServer]:
    """A provider that sends the key back every way it can."""
    with FakeHttpServer() as srv:
        srv.api_key = "not-the-key"  # PDL: 401 with a JSON error
        for i in range(8):
            srv.add_company(f"c{i}", 1000 + i)
        srv.add_company("p0", 500, website="p0.example")
        srv.add_company("h2", 321)
        # a body: the key starts ~30 characters in, where clipping at 57 used to cut it
        srv.inject("c0", body=f"<html><body>Invalid API key {KEY} for this account</body></html>"
                   .encode(), content_type="text/html")
        # headers: a Retry-After and a Content-Type that carry it
        srv.inject("c1", status=429, headers={"Retry-After": KEY, "X-Echo-Key": KEY})
        srv.inject("c2", body=b"<p>nope", content_type=f"text/html; key={KEY}")
        # a redirect URL (Location) with the key in its query and path
        srv.inject("c3", status=302, headers={"Location": f"/api/companies/x-{KEY}?echo={KEY}"})
        # a JSON error body
        srv.inject("c4", status=401, body=json.dumps(
            {"error": {"message": f"API key {KEY} is invalid", "key": KEY}}).encode())
        # a payload value and a payload key
        srv.payloads["c5"] = {"data": {"employee_count": f"Invalid key {KEY} (error 401)"}}
        srv.payloads["c6"] = {"data": {KEY: 1, "count": 2}}
        # a body cut off mid-transfer, every time
        srv.inject("c7", cut=True, body=json.dumps({"echo": KEY}).encode())
        # pages: the key in a title, and as the "count"
        srv.pages["h0"] = (f"<html><head><title>Sign in: key {KEY} expired</title></head>"
                           "<body>Log in to continue</body></html>")
        srv.pages["h1"] = f"<html><span class='employees'>{KEY} employees</span></html>"
        yield srv


def write_config(root: Path, url: str) -> Path:
    secret = f'header_env = {{ X-Api-Key = "{ENV}" }}\nparams_env = {{ api_key = "{ENV}" }}\n'
    fast = "retries = 1\nbackoff = 0.01\nbackoff_jitter = 0\ntimeout = 2\nretry_after_max = 0.1\n"
    api = [f"c{i}" for i in range(8)]
    pages = ["h0", "h1", "h2"]
    companies = "".join(f'[companies.{c}]\nname = "{c.upper()}"\n' for c in api + pages)
    companies += '[companies.p0]\nname = "P0"\nexternal_ids = { website = "p0.example" }\n'
    cfg = root / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{root / "data" / "tracker.db"}"\n\n'
        f'[report]\noutput_dir = "reports"\n\n'
        f'[sources.api]\ntype = "http_json"\nurl = "{url}/api/companies/{{company}}"\n'
        f'value_path = "data.employee_count"\ncompanies = {json.dumps(api)}\n{secret}{fast}\n'
        f'[sources.page]\ntype = "html_page"\nurl = "{url}/pages/{{company}}"\n'
        f'selector = ".employees"\ncompanies = {json.dumps(pages)}\n{secret}{fast}\n'
        f'[sources.pdl]\ntype = "pdl"\napi_key_env = "{ENV}"\nbase_url = "{url}"\n'
        f'prefer = "website"\ncompanies = ["p0"]\n{fast}\n'
        + companies,
        encoding="utf-8",
    )
    return cfg


def cli(root: Path, log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**python_env(), ENV: KEY}
    return subprocess.run(
        [sys.executable, "-c", CLI, str(log), "--config", str(root / "config.toml"), *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


def table_texts(db: Path) -> dict[str, str]:
    """The text of every row of every table, as the stdlib reads the file."""
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: repr(conn.execute(f'SELECT * FROM "{n}"').fetchall()) for n in names}


def test_a_key_echoed_back_is_never_shown_or_stored(
    echoing: FakeHttpServer, tmp_path: Path
) -> None:
    assert len(KEY) > 60 and not leaks("")
    write_config(tmp_path, echoing.url)
    log = tmp_path / "tracker.log"
    outputs = {}
    for args in (("collect",), ("run",), ("status",)):
        proc = cli(tmp_path, log, *args)
        assert "Traceback" not in proc.stderr, proc.stderr
        outputs[" ".join(args)] = proc
    assert outputs["collect"].returncode == 3, outputs["collect"].stderr  # pdl: all failed
    assert "failed" in outputs["collect"].stdout
    assert outputs["run"].returncode in (0, 1, 2), outputs["run"].stderr

    # the key really went out, and really came back: the search below is not vacuous
    sent = [r for r in echoing.log if r.headers.get("X-Api-Key") == KEY]
    assert len(sent) >= 10 and any(r.query.get("api_key") == [KEY] for r in sent)
    assert any(r.path.startswith("/api/companies/x-") for r in echoing.log)  # redirected
    text = log.read_text(encoding="utf-8")
    assert "DEBUG urllib3" in text and "api_key=***" in text

    found = {}
    for name, proc in outputs.items():
        found[f"{name}: stdout"] = leaks(proc.stdout)
        found[f"{name}: stderr"] = leaks(proc.stderr)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in files), "no report was written"
    assert any(p.name == "tracker.db" for p in files)
    for path in files:  # the database with its -wal/-shm, the log, the report, config.toml
        found[str(path.relative_to(tmp_path))] = leaks(path.read_bytes().decode("latin-1"))
    tables = table_texts(tmp_path / "data" / "tracker.db")
    assert "run_sources" in tables
    for table, rows in tables.items():
        found[f"table {table}"] = leaks(rows)
    assert not {where: pieces for where, pieces in found.items() if pieces}

    # ... and what was recorded still says what went wrong, with the key masked
    with sqlite3.connect(tmp_path / "data" / "tracker.db") as conn:
        rows = conn.execute("SELECT failures FROM run_sources").fetchall()
    reasons = "\n".join(f["reason"] for (failures,) in rows for f in json.loads(failures))
    for expected in ("got HTML", "HTTP 429", "HTTP 404", "HTTP 401", "is not a count",
                     "no key 'employee_count'", "cut off", "matched nothing"):
        assert expected in reasons, expected
    assert "***" in reasons


@pytest.mark.parametrize("shape", ["8{t}", "12,345{t}", "1.5K{t}", "{t}9", "-{t}"])
def test_a_count_that_is_a_key_is_refused_without_quoting_part_of_it(shape: str) -> None:
    """Whatever the key's first characters, a refusal quotes none of it."""
    from tracker.errors import FatalSourceError
    from tracker.sources.http_values import REDACTOR, parse_count

    key = shape.format(t=secrets.token_urlsafe(30))
    REDACTOR.add(key)
    for value in (key, f"{key} employees", f"  {key}\n"):
        with pytest.raises(FatalSourceError) as caught:
            parse_count(value, "the count", ("employees",))
        message = str(caught.value)
        assert "not a count" in message and "***" in message
        assert not [key[i:i + WINDOW] for i in range(len(key) - WINDOW + 1)
                    if key[i:i + WINDOW] in message], message
