"""Verdicts follow the data (issue 10.2): corrections re-judge alerts, changes are
recorded and notified once, a glitch resolves itself unless someone reviewed it.

Why: an analyst paged about a provisional drop must hear when it turned out a
glitch or held, exactly once, and an alert whose data were corrected away must not
stay on the books as if nothing happened (nor vanish: someone was paged). Every
test drives real daily runs (``run_once`` over a ``csv_folder`` source), a real
webhook receiver on 127.0.0.1, and a real SQLite file and PostgreSQL database.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tracker.alerts import alert_history, list_alerts, set_status
from tracker.config import Settings
from tracker.job import run_once
from tracker.records import ALERT_VERDICTS
from tracker.store import Store
from tracker.workspace import Workspace

START = date(2024, 1, 1)
DROP = START + timedelta(days=59)  # 2024-02-29, every company halves
BASE = {"Acme": 1000, "Beta": 2000, "Gamma": 3000, "Delta": 4000}


class Hook:
    """A webhook receiver: every JSON body POSTed to it, in order."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.posts.append(json.loads(raw))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/hook"

    def texts(self) -> list[str]:
        return [p["text"] for p in self.posts]


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.httpd.shutdown()
    h.httpd.server_close()


class Daily:
    """A folder of daily CSV drops and a workspace whose daily run collects them."""

    def __init__(self, root: Path, url: str, notify: dict[str, Any] | None = None) -> None:
        self.folder = root / "drops"
        self.folder.mkdir(parents=True)
        rng = np.random.default_rng(3)
        self.write("history.csv", [(c, START + timedelta(days=d), round(b * (1 + rng.normal(
            0, 0.003)))) for d in range(59) for c, b in BASE.items()])
        self.ws = Workspace(Settings(base_dir=root, notify=notify or {}, sources={
            "drops": {"type": "csv_folder", "path": str(self.folder)}}), Store(url))

    def write(self, name: str, rows: list[tuple[str, date, int]]) -> None:
        pd.DataFrame([(c, d.isoformat(), v) for c, d, v in rows],
                     columns=["company", "date", "employees"]).to_csv(self.folder / name,
                                                                      index=False)

    def run(self, day: date, values: dict[str, int],
            extra: list[tuple[str, date, int]] | None = None) -> Any:
        """One day's drop (and corrections of earlier days), then that day's run."""
        self.write(f"{day}.csv", [(c, day, v) for c, v in values.items()] + (extra or []))
        result = run_once(self.ws, day)
        assert result.error is None, result.summary()
        return result

    def alerts(self) -> dict[str, dict[str, Any]]:
        return {r["company"]: r for r in list_alerts(self.ws).to_dict("records")}


@pytest.fixture
def daily(tmp_path: Path, db_url: str, hook: Hook) -> Iterator[Daily]:
    d = Daily(tmp_path, db_url, {"hook": {"type": "webhook", "url": hook.url,
                                          "backoff": 0.01}})
    yield d
    d.ws.close()


HALF = {c: b // 2 for c, b in BASE.items()}


def test_changed_verdicts_are_notified_once_and_status_follows(daily: Daily,
                                                                hook: Hook) -> None:
    """Four drops paged at once; then Acme and Beta come back (glitches), a correction
    withdraws Delta's, Gamma's holds (confirmed). Each change is sent once."""
    first = daily.run(DROP, HALF)
    assert first.exit_code == 2
    assert len(hook.posts) == 1 and "4 new alert(s) on 2024-02-29" in hook.texts()[0]
    assert {a["verdict"] for a in daily.alerts().values()} == {"provisional"}
    beta = daily.alerts()["beta"]["id"]
    set_status(daily.ws, [beta], "acknowledged", note="looking into it")  # an analyst

    # Acme and Beta are back; Delta's 2024-02-29 was a bad scrape, corrected
    day1 = DROP + timedelta(days=1)
    second = daily.run(day1, {"Acme": 1001, "Beta": 2003, "Gamma": 1502, "Delta": 4001},
                       extra=[("Delta", DROP, 3999)])
    assert second.exit_code == 0 and "1 alert(s) withdrawn" in second.summary()
    assert "notify hook: sent 3 alert update(s)" in second.summary()
    alerts = daily.alerts()
    assert (alerts["acme"]["verdict"], alerts["acme"]["status"]) == ("glitch", "resolved")
    # reviewed by an analyst: the verdict changes, the analyst's status stays
    assert (alerts["beta"]["verdict"], alerts["beta"]["status"]) == ("glitch", "acknowledged")
    assert (alerts["delta"]["verdict"], alerts["delta"]["status"]) == ("withdrawn", "resolved")
    assert alerts["gamma"]["verdict"] == "provisional"
    assert len(hook.posts) == 2, [t.splitlines()[0] for t in hook.texts()]
    update = hook.texts()[1]
    assert update.startswith("tracker: 3 alert update(s) about 2024-02-29 (")
    assert "2 glitch" in update and "1 withdrawn" in update
    assert "now glitch (was provisional drop)" in update
    assert "Delta: drop -49.8%" in update and "now withdrawn (was provisional drop)" in update
    assert "Gamma" not in update

    for k in (2, 3, 4):  # Gamma stays down: confirmed once, told once
        daily.run(DROP + timedelta(days=k), {"Acme": 1000, "Beta": 2001, "Gamma": 1499,
                                             "Delta": 4002})
    assert daily.alerts()["gamma"]["verdict"] == "confirmed"
    assert len(hook.posts) == 3
    assert hook.texts()[2].startswith("tracker: 1 alert update(s) about 2024-02-29 "
                                      "(1 confirmed): Gamma")
    assert "now confirmed (was provisional drop)" in hook.texts()[2]
    daily.run(DROP + timedelta(days=5), {"Acme": 999, "Beta": 2000, "Gamma": 1500,
                                         "Delta": 4000})
    assert len(hook.posts) == 3  # nothing changed: nothing sent

    # every change is on record: when, the day of data, old -> new and why
    history = alert_history(daily.ws)
    firsts = history[history["reason"] == "first reported"]
    assert len(firsts) == 4 and set(firsts["new_verdict"]) == {"provisional"}
    assert set(firsts["day"]) == {DROP} and firsts["old_verdict"].isna().all()
    beta_log = history[history["company"] == "beta"]
    reasons = list(beta_log["reason"])  # reported, reviewed, then found a glitch
    assert reasons[0] == "first reported" and len(reasons) == 3
    assert reasons[1].startswith("reviewed by ") and "(looking into it)" in reasons[1]
    review = beta_log.iloc[1]
    assert (review["old_status"], review["new_status"]) == ("open", "acknowledged")
    assert review["changes"]["note"] == [None, "looking into it"]
    delta = history[(history["company"] == "delta")
                    & (history["reason"] != "first reported")].iloc[0]
    assert (delta["old_verdict"], delta["new_verdict"]) == ("provisional", "withdrawn")
    assert delta["day"] == day1 and (delta["old_status"], delta["new_status"]) == (
        "open", "resolved")
    assert "no longer finds it" in delta["reason"] and "corrected" in delta["reason"]
    gamma = history[(history["company"] == "gamma") & (history["new_verdict"] == "confirmed")]
    assert len(gamma) == 1 and gamma.iloc[0]["day"] == DROP + timedelta(days=3)
    assert set(history["new_verdict"]) <= set(ALERT_VERDICTS)


def test_a_correction_that_changes_a_drop_keeps_it_and_records_the_change(
        daily: Daily, hook: Hook) -> None:
    """A corrected value that still makes a drop updates the same alert (same id,
    new size) and records which fields changed; a second correction that restores
    the drop's data brings a withdrawn alert back, open again."""
    daily.run(DROP, HALF)
    acme = daily.alerts()["acme"]
    day1 = DROP + timedelta(days=1)
    daily.run(day1, {**HALF, "Acme": 700}, extra=[("Acme", DROP, 700)])
    kept = daily.alerts()["acme"]
    assert kept["id"] == acme["id"] and kept["verdict"] == "provisional"
    assert kept["change_pct"] == pytest.approx(-30, abs=1)
    change = alert_history(daily.ws, [int(acme["id"])]).iloc[-1]
    assert change["old_verdict"] == change["new_verdict"] == "provisional"
    assert change["changes"]["change_pct"][0] == pytest.approx(acme["change_pct"], abs=0.01)
    assert "re-evaluated" in change["reason"]
    assert len(hook.posts) == 1  # the verdict did not change: nothing to tell

    day2 = DROP + timedelta(days=2)  # it was all a bad scrape: Acme never moved
    daily.run(day2, {**HALF, "Acme": 1000}, extra=[("Acme", DROP, 1000), ("Acme", day1, 1000)])
    assert daily.alerts()["acme"]["verdict"] == "withdrawn"
    assert len(hook.posts) == 2 and "now withdrawn" in hook.texts()[1]
    day3 = DROP + timedelta(days=3)  # ... no, it was right the first time
    daily.run(day3, {**HALF, "Acme": 500},
              extra=[("Acme", DROP, 500), ("Acme", day1, 500), ("Acme", day2, 500)])
    back = daily.alerts()["acme"]
    assert back["id"] == acme["id"] and back["verdict"] in ("provisional", "confirmed")
    assert back["status"] == "open"  # nobody reviewed it: it follows its verdict back
    assert len(hook.posts) == 3 and "(was withdrawn" in hook.texts()[2]


def test_what_was_notified_is_settled_in_one_transaction(tmp_path: Path, hook: Hook) -> None:
    """If remembering what a notification said fails, the alert is not stamped notified
    either: the next run sends again (the safe direction) instead of a half-settled
    alert whose later verdict change is never told, or told twice."""
    import sqlite3

    db = tmp_path / "t.db"
    d = Daily(tmp_path, f"sqlite:///{db}", {"hook": {"type": "webhook", "url": hook.url,
                                                    "backoff": 0.01}})
    try:
        run_once(d.ws, DROP - timedelta(days=1))  # history only: nothing to page
        with sqlite3.connect(db) as conn:  # the second statement of settling fails
            conn.execute("CREATE TRIGGER no_memory BEFORE UPDATE OF notified_verdict ON alerts "
                         "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
        d.write(f"{DROP}.csv", [(c, DROP, v) for c, v in HALF.items()])
        failed = run_once(d.ws, DROP)
        assert failed.exit_code == 3 and "disk on fire" in failed.summary()
        assert len(hook.posts) == 1  # it was sent ...
        with sqlite3.connect(db) as conn:  # ... but nothing of the settling was kept
            assert conn.execute("SELECT count(*) FROM alerts WHERE notified_at IS NOT NULL"
                                ).fetchone() == (0,)
            # the notifier's own record that it sent them survives: no page twice
            assert conn.execute("SELECT count(*) FROM source_state WHERE source LIKE "
                                "'notify:%' AND key IN (SELECT fingerprint FROM alerts)"
                                ).fetchone() == (4,)
            conn.execute("DROP TRIGGER no_memory")
        again = run_once(d.ws, DROP)
        assert again.error is None and len(hook.posts) == 1
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM alerts WHERE notified_at IS NOT NULL "
                                "AND notified_verdict = 'provisional'").fetchone() == (4,)
            assert conn.execute("SELECT count(*) FROM source_state WHERE source LIKE "
                                "'notify:%' AND key IN (SELECT fingerprint FROM alerts)"
                                ).fetchone() == (0,)
    finally:
        d.ws.close()
