"""Silences: stored with author, note and expiry; respected by notifications and by
``tracker run``'s exit code; listed (active and expired) and removable; every bad input
one line and exit 3 with nothing written. Real SQLite and PostgreSQL, a real webhook
receiver, the real CLI in a subprocess."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from helpers import tracker
from test_notify import Receiver, receiver, webhook  # noqa: F401

from tracker.alerts import list_alerts
from tracker.config import Settings
from tracker.errors import InputError, NotFoundError
from tracker.ingest import import_file
from tracker.job import run_once
from tracker.notify import pending_alerts, send_notifications
from tracker.records import Alert
from tracker.silences import (
    active_for,
    add_silence,
    list_silences,
    remove_silence,
    silenced,
    unsilenced,
)
from tracker.store import Store
from tracker.store import silences as silence_store
from tracker.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"
PURGE = date(2022, 10, 11)


#: A source that works and brings nothing: runs judge the stored sample.
EMPTY_INBOX = {"inbox": {"type": "csv_folder", "path": "inbox"}}


@pytest.fixture
def ws(db_url: str, tmp_path: Path) -> Iterator[Workspace]:
    """The 2022 sample in a store, an empty inbox as the one source, a webhook."""
    store = Store(db_url)
    import_file(store, SAMPLE)
    store.upsert_company("apple", name="Apple Inc.", aliases=["AAPL"])
    (tmp_path / "inbox").mkdir()
    yield Workspace(Settings(base_dir=tmp_path, sources=EMPTY_INBOX,
                             notify={"slack": webhook()}), store)
    store.close()


def soon(ws: Workspace, days: int = 7) -> date:
    return ws.today() + timedelta(days=days)


# -- the record ----------------------------------------------------------------------------


def test_a_silence_on_an_alias_or_a_name_is_stored_on_the_company_id(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGNAME", "oncall-ana")
    monkeypatch.setenv("USER", "oncall-ana")
    by_alias = add_silence(ws, company="AAPL", until=soon(ws), note="reorg announced")
    by_name = add_silence(ws, company="Apple Inc.", kind="drop", until=soon(ws, 1),
                          note="purge", author="bo")
    assert (by_alias.company, by_alias.kind, by_alias.author) == ("apple", None, "oncall-ana")
    assert (by_name.company, by_name.kind, by_name.author) == ("apple", "drop", "bo")
    assert by_alias.note == "reorg announced" and by_alias.until == soon(ws)
    listed = list_silences(ws)
    assert listed["id"].tolist() == [by_alias.id, by_name.id]
    assert listed["company"].tolist() == ["apple", "apple"]
    assert listed["state"].tolist() == ["active", "active"]
    assert str(listed["created_at"].dt.tz) == "UTC"


def test_expired_silences_stay_listed_and_any_can_be_removed(ws: Workspace) -> None:
    # an expired silence is what the store holds after its day passed (add refuses
    # to create one in the past, so it is written the way time would leave it)
    old = silence_store.add(ws.store, company_id="apple", kind=None,
                            until=ws.today() - timedelta(days=1), author="ana", note="old")
    new = add_silence(ws, kind="glitch", until=ws.today(), note="scraper flaky")
    listed = list_silences(ws)
    assert dict(zip(listed["id"], listed["state"], strict=True)) == {
        old["id"]: "expired", new.id: "active"}  # ``until`` is inclusive: today is active
    assert list_silences(ws, active_only=True)["id"].tolist() == [new.id]
    gone = remove_silence(ws, old["id"])
    assert gone.note == "old"
    assert list_silences(ws)["id"].tolist() == [new.id]
    with pytest.raises(NotFoundError, match=f"no silence with id {old['id']}"):
        remove_silence(ws, old["id"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "needs a COMPANY, a --kind, or both"),
    ({"company": "no-such-co"}, "unknown company 'no-such-co'"),
    ({"kind": "wobble"}, "--kind: 'wobble' is not one of"),
    ({"company": "apple", "until": date(2022, 10, 31)}, "is in the past"),
    ({"company": "apple", "note": "   "}, "--note"),
    ({"company": "apple", "author": " "}, "--author: must not be empty"),
    ({"company": "apple", "author": "x" * 201}, "too long"),
])
def test_bad_silences_are_refused_and_nothing_is_written(
    ws: Workspace, kwargs: dict, message: str,
) -> None:
    args = {"until": soon(ws), "note": "why", **kwargs}
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        add_silence(ws, **args)
    assert list_silences(ws).empty


# -- which alerts a silence covers ------------------------------------------------------------


def test_the_covering_rule(ws: Workspace) -> None:
    run_once(ws, PURGE)
    apple, amazon = (next(a for a in pending_alerts(ws, PURGE) if a.company == c)
                     for c in ("apple", "amazon"))
    assert active_for(ws, apple) is None
    on_apple = add_silence(ws, company="apple", until=soon(ws), note="known")
    add_silence(ws, company="amazon", kind="glitch", until=soon(ws), note="kind must match")
    assert active_for(ws, apple) == on_apple
    assert active_for(ws, amazon) is None  # a glitch silence does not cover a drop
    assert silenced(ws, [amazon, apple]) == {1: on_apple}
    assert unsilenced(ws, [amazon, apple]) == [amazon]
    # an alert first detected after the silence's last day is not covered
    later = Alert.from_mapping({**apple.as_dict(), "detected_on": soon(ws, 8)})
    assert active_for(ws, later) is None
    on_drops = add_silence(ws, kind="drop", until=soon(ws, 8), note="all drops")
    assert active_for(ws, later) == on_drops


# -- notifications and the exit code -----------------------------------------------------------


def test_a_silenced_alert_is_not_sent_and_is_released_when_the_silence_goes(
    ws: Workspace, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    silence = add_silence(ws, company="apple", until=soon(ws), note="LinkedIn purge")
    run_once(ws, PURGE)
    assert len(receiver.posts) == 1
    text = receiver.posts[0].body["text"]
    assert "Amazon" in text and "Apple" not in text
    notified = list_alerts(ws).set_index("company")["notified_at"]
    assert notified.notna()["amazon"] and notified.isna()["apple"]  # held, not marked

    assert send_notifications(ws, PURGE).notified == []  # still silenced: nothing sent
    assert len(receiver.posts) == 1
    remove_silence(ws, silence.id)
    report = send_notifications(ws, PURGE)
    assert len(report.notified) == 1 and len(receiver.posts) == 2
    assert "Apple" in receiver.posts[1].body["text"]


def test_a_silence_holds_back_the_update_of_an_alert_that_paged(
    ws: Workspace, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    run_once(ws, PURGE)  # pages the provisional drops of Apple and Amazon
    assert len(receiver.posts) == 1
    add_silence(ws, company="apple", until=soon(ws), note="we know, stop")
    for day in (date(2022, 10, 12), date(2022, 10, 13), date(2022, 10, 14)):
        run_once(ws, day)  # the drops are confirmed: one update, Amazon's only
    updates = [p.body["text"] for p in receiver.posts[1:]]
    assert len(updates) == 1, updates
    assert "Amazon" in updates[0] and "Apple" not in updates[0]


def test_a_silenced_critical_does_not_page(
    ws: Workspace, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    add_silence(ws, company="apple", until=soon(ws), note="known")
    one_left = run_once(ws, PURGE)
    assert one_left.exit_code == 2, one_left.summary()  # Amazon is not silenced
    assert "1 new critical" in one_left.summary()
    assert "1 new alert(s) silenced" in one_left.summary()


def test_silencing_every_drop_makes_the_purge_day_ok(
    ws: Workspace, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    add_silence(ws, kind="drop", until=soon(ws), note="platform purge day")
    quiet = run_once(ws, PURGE)
    assert quiet.exit_code == 0, quiet.summary()
    assert quiet.summary().startswith("OK: 2022-10-11")
    assert "0 new critical, 0 new warning" in quiet.summary()
    assert "2 new alert(s) silenced" in quiet.summary()
    assert receiver.posts == []
    # silenced alerts are stored and listed all the same
    assert {"apple", "amazon"} <= set(list_alerts(ws, since=PURGE)["company"])


# -- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the sample collected by a first ``tracker run``."""
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    (tmp_path / "data" / "samples").mkdir(parents=True)
    shutil.copy(SAMPLE, tmp_path / "data" / "samples")
    first = tracker("run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    return tmp_path


def test_cli_silence_add_list_remove(project: Path) -> None:
    until = (date.today() + timedelta(days=30)).isoformat()
    made = tracker("silence", "add", "Apple", "--until", until, "--note", "LinkedIn purge",
                   "--author", "ana", cwd=project)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == f"silence 1: apple silenced through {until} by ana"
    kind = tracker("silence", "add", "--kind", "glitch", "--until", until, "--note", "flaky",
                   cwd=project)
    assert kind.returncode == 0 and "glitch alerts silenced" in kind.stdout
    listed = json.loads(tracker("silence", "list", "--format", "json", cwd=project).stdout)
    first = listed[0]
    assert (first["id"], first["company"], first["kind"], first["state"], first["author"],
            first["note"]) == (1, "apple", None, "active", "ana", "LinkedIn purge")
    assert listed[1]["kind"] == "glitch" and listed[1]["author"]  # the OS user
    table = tracker("silence", "list", cwd=project).stdout
    assert "LinkedIn purge" in table and "active" in table
    assert tracker("silence", "remove", "1", cwd=project).stdout.strip() == "silence 1 removed"
    csv = tracker("silence", "list", "--format", "csv", cwd=project).stdout.splitlines()
    assert csv[0] == "id,company,kind,until,state,author,note,created_at" and len(csv) == 2


@pytest.mark.parametrize(("args", "message"), [
    (["silence", "add", "--until", "2099-01-01", "--note", "x"], "needs a COMPANY"),
    (["silence", "add", "nope", "--until", "2099-01-01", "--note", "x"],
     "unknown company 'nope'"),
    (["silence", "add", "apple", "--until", "2099-13-01", "--note", "x"],
     "--until: '2099-13-01' is not a date"),
    (["silence", "add", "apple", "--until", "2022-10-31", "--note", "x"], "is in the past"),
    (["silence", "add", "apple", "--until", "2099-01-01", "--note", ""], "--note"),
    (["silence", "remove", "42"], "no silence with id 42"),
])
def test_cli_bad_silences_are_one_line_exit_3(project: Path, args: list[str],
                                               message: str) -> None:
    bad = tracker(*args, cwd=project)
    assert bad.returncode == 3
    assert "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], bad.stderr
    assert tracker("silence", "list", cwd=project).stdout.strip() == "(nothing)"
