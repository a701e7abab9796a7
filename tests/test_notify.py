"""Notifiers against real local servers: a webhook receiver (HTTP on 127.0.0.1) and an
SMTP server (aiosmtpd), the notify step inside the main job on the sample purge, and
the validation of ``[notify.NAME]`` tables. Nothing is mocked."""

from __future__ import annotations

import email
import email.policy
import html
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from tracker.alerts import KINDS
from tracker.config import Settings, load_settings
from tracker.errors import ConfigError, NotifyError
from tracker.ingest import import_file
from tracker.job import run_once
from tracker.notify import pending_alerts, send_notifications
from tracker.notify.base import Kind as NotifyKind
from tracker.notify.base import NotifyContext, available_notifiers, load_notifier_class
from tracker.notify.email import EmailNotifier, EmailSettings
from tracker.notify.webhook import WebhookNotifier, build_payload
from tracker.records import Alert
from tracker.store import Store
from tracker.store.schema import alerts, runs, series
from tracker.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "purge_2022.csv"
SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxSecretToken123"
PURGE = date(2022, 10, 11)

APPLE = Alert(
    id=7, fingerprint="f-apple", company="apple", company_name="Apple",
    metric="employees", source="linkedin", date=PURGE, detected_on=PURGE,
    verdict="provisional", kind="drop", change_pct=-50.61, value_before=576562.0,
    value_after=284829.0, score=40.0, severity="critical", status="open",
    event_id="ev-2022-10-11-drop", sources_agreeing=1,
)
AMAZON = replace(APPLE, id=8, fingerprint="f-amazon", company="amazon",
                 company_name="Amazon", change_pct=-32.9, value_before=1250000.0,
                 value_after=838601.0)


# -- a real webhook receiver ------------------------------------------------------------


@dataclass
class Posted:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """POST receiver on 127.0.0.1; ``faults`` are (status, headers, delay) used in order."""

    httpd: ThreadingHTTPServer
    posts: list[Posted] = field(default_factory=list)
    faults: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}{SECRET_PATH}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            rec = state["r"]
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.stamps.append(time.monotonic())
            status, headers, delay = rec.faults.pop(0) if rec.faults else (200, {}, 0.0)
            if delay:
                time.sleep(delay)
            if self.path != SECRET_PATH:
                status = 404
            if status == 200:
                rec.posts.append(Posted(self.path, dict(self.headers), json.loads(raw)))
            body = b"ok" if status == 200 else b"no_service"
            try:
                self.send_response(status)
                for k, v in {"Content-Type": "text/plain", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state["r"] = Receiver(httpd)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield state["r"]
    httpd.shutdown()
    httpd.server_close()


def webhook(url_env: str = "TEST_HOOK_URL", **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url_env": url_env, "backoff": 0.01, **extra}


# -- a real SMTP server -------------------------------------------------------------------


@dataclass
class Mailbox:
    port: int
    messages: list[Any] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox(_free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.messages.append(envelope)
            return "250 Message accepted for delivery"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            box.logins.append((login, password))
            return AuthResult(success=password == "s3cret-smtp-pw", handled=False)
        return AuthResult(success=False, handled=False)

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port,
                            authenticator=authenticator, auth_require_tls=False)
    controller.start()
    yield box
    controller.stop()


def mail(box: Mailbox, **extra: Any) -> dict[str, Any]:
    return {"type": "email", "host": "127.0.0.1", "port": box.port, "starttls": False,
            "sender": "tracker@example.org", "to": ["oncall@example.org", "ana@example.org"],
            "timeout": 5, **extra}


# -- webhook --------------------------------------------------------------------------------


def test_webhook_posts_one_slack_message(receiver: Receiver) -> None:
    hook = WebhookNotifier.from_config("slack", webhook(), {"TEST_HOOK_URL": receiver.url})
    hook.send([AMAZON, APPLE], NotifyContext(PURGE))
    assert len(receiver.posts) == 1
    body = receiver.posts[0].body
    assert receiver.posts[0].headers["Content-Type"].startswith("application/json")
    assert set(body) == {"text", "blocks"}
    assert body["text"].startswith("tracker: 2 new alert(s) on 2022-10-11 (2 critical)")
    assert body["text"].index("Apple") < body["text"].index("Amazon")  # the larger move first
    # Slack shows "-&gt;" as "->": the fallback is escaped like every other field
    assert "576,562 -&gt; 284,829" in body["text"] and "-50.6%" in body["text"]
    assert body["blocks"][0]["type"] == "header"
    sections = [b["text"]["text"] for b in body["blocks"] if b["type"] == "section"]
    assert len(sections) == 2
    assert sections[0].startswith("*Apple*: *drop* -50.6%, 576,562 → 284,829 on 2022-10-11")
    for needed in ("critical", "provisional", "source linkedin", "1 source(s) agreeing",
                   "event ev-2022-10-11-drop", "alert #7"):
        assert needed in sections[0]
    context = body["blocks"][-1]
    assert context["type"] == "context"
    assert "Apple and Amazon moved together" in context["elements"][0]["text"]


def test_webhook_caps_the_message_and_escapes_mrkdwn() -> None:
    many = [replace(APPLE, id=i, fingerprint=f"f{i}", company=f"c{i}",
                    company_name=f"<Co {i}> & sons", event_id=None) for i in range(30)]
    body = build_payload(many, NotifyContext(PURGE), max_alerts=5, include_alerts=True)
    sections = [b for b in body["blocks"] if b["type"] == "section"]
    assert len(sections) == 5
    assert "&lt;Co" in sections[0]["text"]["text"] and "<Co" not in sections[0]["text"]["text"]
    assert "and 25 more" in body["blocks"][-1]["elements"][0]["text"]
    assert "and 25 more" in body["text"]
    assert len(body["alerts"]) == 30 and body["alerts"][0]["date"] == "2022-10-11"
    assert set(body["alerts"][0]) == {f for f in APPLE.as_dict() if f != "fresh"}
    assert len(body["blocks"][0]["text"]["text"]) <= 150


def test_webhook_retries_server_errors_then_succeeds(receiver: Receiver) -> None:
    receiver.faults += [(500, {}, 0.0), (503, {}, 0.0)]
    hook = WebhookNotifier.from_config("slack", webhook(retries=3), {"TEST_HOOK_URL": receiver.url})
    hook.send([APPLE], NotifyContext(PURGE))
    assert len(receiver.stamps) == 3 and len(receiver.posts) == 1


def test_webhook_honours_retry_after(receiver: Receiver) -> None:
    receiver.faults.append((429, {"Retry-After": "1"}, 0.0))
    hook = WebhookNotifier.from_config("slack", webhook(), {"TEST_HOOK_URL": receiver.url})
    hook.send([APPLE], NotifyContext(PURGE))
    assert len(receiver.posts) == 1
    assert receiver.stamps[1] - receiver.stamps[0] >= 0.9


def test_webhook_failures_never_show_the_secret_url(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = receiver.url.replace("xoxSecretToken123", "xoxOtherSecret456")
    hook = WebhookNotifier.from_config("slack", webhook(), {"TEST_HOOK_URL": wrong})
    with pytest.raises(NotifyError) as info:
        hook.send([APPLE], NotifyContext(PURGE))
    message = str(info.value)
    assert "HTTP 404" in message and "webhook URL is wrong" in message
    assert len(receiver.stamps) == 1  # a 404 is not retried
    receiver.faults += [(500, {}, 0.0)] * 3
    hook = WebhookNotifier.from_config("slack", webhook(retries=2),
                                       {"TEST_HOOK_URL": receiver.url})
    with pytest.raises(NotifyError, match=r"HTTP 500.*after 3 attempts"):
        hook.send([APPLE], NotifyContext(PURGE))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any('"POST *** HTTP/1.1" 404' in line for line in lines), lines  # scrubbed, not lost
    for text in (message, caplog.text):
        for secret in ("T0SECRET", "xoxSecretToken123", "xoxOtherSecret456"):
            assert secret not in text


def test_webhook_timeout_and_refused_connection(receiver: Receiver) -> None:
    receiver.faults.append((200, {}, 1.0))
    hook = WebhookNotifier.from_config("slack", webhook(retries=0, timeout=0.2),
                                       {"TEST_HOOK_URL": receiver.url})
    with pytest.raises(NotifyError, match="timed out"):
        hook.send([APPLE], NotifyContext(PURGE))
    dead = f"http://127.0.0.1:{_free_port()}{SECRET_PATH}"
    hook = WebhookNotifier.from_config("slack", webhook(retries=0), {"TEST_HOOK_URL": dead})
    with pytest.raises(NotifyError, match="Connection") as info:
        hook.send([APPLE], NotifyContext(PURGE))
    assert "T0SECRET" not in str(info.value)
    assert "after 1 attempt" in str(info.value)  # retries = 0: one try, and it says so
    hook = WebhookNotifier.from_config("slack", webhook(retries=2, backoff=0.01),
                                       {"TEST_HOOK_URL": dead})
    with pytest.raises(NotifyError, match=r"Connection.*after 3 attempts"):
        hook.send([APPLE], NotifyContext(PURGE))


def test_webhook_missing_env_var_is_named() -> None:
    with pytest.raises(ConfigError, match=r"\[notify.slack\] url_env.*SLACK_URL_UNSET"):
        WebhookNotifier.from_config("slack", webhook("SLACK_URL_UNSET"), {})


# -- email ----------------------------------------------------------------------------------


def test_email_sends_text_and_html_with_auth(smtp_server: Mailbox,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    evil = replace(AMAZON, company_name="<script>alert(1)</script>")
    notifier = EmailNotifier.from_config(
        "mail", mail(smtp_server, username="tracker", password_env="TEST_SMTP_PW"),
        {"TEST_SMTP_PW": "s3cret-smtp-pw"})
    notifier.send([evil, APPLE], NotifyContext(PURGE))
    assert smtp_server.logins == [("tracker", "s3cret-smtp-pw")]
    (envelope,) = smtp_server.messages
    assert envelope.mail_from == "tracker@example.org"
    assert envelope.rcpt_tos == ["oncall@example.org", "ana@example.org"]
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert msg["Subject"].startswith("[tracker] 2 new alert(s) on 2022-10-11 (2 critical)")
    assert msg["To"] == "oncall@example.org, ana@example.org"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (text, html):
        assert "576,562" in part and "284,829" in part and "-50.6%" in part
        assert "ev-2022-10-11-drop" in part and "critical" in part
    assert "Apple: drop -50.6%, 576,562 -> 284,829 on 2022-10-11" in text
    assert "&lt;script&gt;" in html and "<script>" not in html
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("mail.log")]
    assert ours and not any("s3cret-smtp-pw" in m for m in ours)  # (the server logs AUTH)


def test_email_wrong_password_and_dead_server(smtp_server: Mailbox) -> None:
    notifier = EmailNotifier.from_config(
        "mail", mail(smtp_server, username="tracker", password_env="TEST_SMTP_PW"),
        {"TEST_SMTP_PW": "wrong-password"})
    with pytest.raises(NotifyError, match=r"login as 'tracker' refused.*\$TEST_SMTP_PW") as info:
        notifier.send([APPLE], NotifyContext(PURGE))
    assert "wrong-password" not in str(info.value)
    assert not smtp_server.messages
    dead = EmailNotifier.from_config("mail", mail(smtp_server, port=_free_port()), {})
    with pytest.raises(NotifyError, match=r"email via 127.0.0.1:\d+: ConnectionRefused"):
        dead.send([APPLE], NotifyContext(PURGE))
    tls = EmailNotifier.from_config("mail", mail(smtp_server, starttls=True), {})
    with pytest.raises(NotifyError, match="set starttls = false"):
        tls.send([APPLE], NotifyContext(PURGE))


def test_email_settings_rules() -> None:
    base = {"type": "email", "host": "smtp.example.org", "sender": "a@b.c", "to": ["x@y.z"]}
    assert EmailSettings.model_validate(base).effective_port == 587
    assert EmailSettings.model_validate({**base, "ssl": True, "starttls": False}
                                        ).effective_port == 465
    for bad, needle in (({"ssl": True}, "not both"),
                        ({"username": "u"}, "go together"),
                        ({"username": "u", "password_env": "P", "starttls": False}, "in clear"),
                        ({"to": []}, "to")):
        with pytest.raises(ValueError, match=needle):
            EmailSettings.model_validate({**base, **bad})


# -- the notify step in the main job -------------------------------------------------------


@pytest.fixture
def purge_ws(db_url: str, tmp_path: Path) -> Iterator[Workspace]:
    store = Store(db_url)
    import_file(store, SAMPLE)
    yield Workspace(Settings(base_dir=tmp_path), store)
    store.close()


def with_notify(ws: Workspace, notify: dict[str, dict[str, Any]]) -> Workspace:
    return Workspace(Settings(base_dir=ws.settings.base_dir, sources={}, notify=notify),
                     ws.store)


def notified(ws: Workspace) -> dict[str, Any]:
    with ws.store.reading() as conn:
        rows = conn.execute(select(series.c.company_id, alerts.c.notified_at)
                            .join(series, series.c.id == alerts.c.series_id)).all()
    return {company: stamp for company, stamp in rows if stamp is not None}


def test_pending_alerts_are_records_read_back_from_the_store(purge_ws: Workspace) -> None:
    ws = with_notify(purge_ws, {})
    run_once(ws, PURGE)  # detection stores the alerts; nothing is configured to send them
    pending = pending_alerts(ws, PURGE)
    assert all(isinstance(a, Alert) for a in pending)
    by_company = {a.company: a for a in pending}
    assert {"apple", "amazon"} <= set(by_company) and "binance" not in by_company  # backfill
    apple = by_company["apple"]
    assert (apple.company_name, apple.kind, apple.severity, apple.status) == (
        "Apple", "drop", "critical", "open")
    assert apple.id is not None and apple.fresh and apple.date == PURGE
    assert pending_alerts(ws, PURGE + timedelta(days=30)) == []  # no longer fresh


def test_run_sends_the_purge_once_and_marks_it(
    purge_ws: Workspace, receiver: Receiver, smtp_server: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    ws = with_notify(purge_ws, {"slack": webhook(), "mail": mail(smtp_server)})
    result = run_once(ws, PURGE)
    assert result.exit_code == 2, result.summary()
    assert len(receiver.posts) == 1 and len(smtp_server.messages) == 1
    text = receiver.posts[0].body["text"]
    assert "Apple" in text and "Amazon" in text
    assert "Binance" not in text and "Contoso" not in text  # backfill and info: not sent
    assert "notify slack: sent 2 alert(s)" in result.summary()
    assert set(notified(ws)) == {"apple", "amazon"}
    with ws.store.reading() as conn:
        details = conn.execute(select(runs.c.details).where(runs.c.id == result.run_id)).scalar()
    assert details["notify"]["slack"] == {"status": "ok", "sent": 2, "pending": 0}

    nxt = run_once(ws, date(2022, 10, 12))
    assert nxt.exit_code == 0, nxt.summary()
    assert len(receiver.posts) == 1 and len(smtp_server.messages) == 1
    assert "notify" not in nxt.summary()


def test_a_failed_send_is_retried_next_run_without_repeating_the_others(
    purge_ws: Workspace, receiver: Receiver, smtp_server: Mailbox,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url.replace("xoxSecret", "xoxWrong"))
    ws = with_notify(purge_ws, {"slack": webhook(), "mail": mail(smtp_server)})
    first = run_once(ws, PURGE)
    assert first.exit_code == 2  # the alerts exist: the code still says so
    assert first.error is None
    summary = first.summary()
    assert "notify slack failed: webhook POST http://127.0.0.1:" in summary
    assert "HTTP 404" in summary and "2 alert(s) kept for the next run" in summary
    assert "notify mail: sent 2 alert(s)" in summary
    assert "xoxWrong" not in summary and "T0SECRET" not in caplog.text
    assert notified(ws) == {}  # slack still owes them
    assert len(smtp_server.messages) == 1

    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)  # the operator fixes the URL
    second = run_once(ws, date(2022, 10, 12))
    assert second.exit_code == 0
    assert "notify slack: sent 2 alert(s)" in second.summary()
    assert len(receiver.posts) == 1 and len(smtp_server.messages) == 1  # no second email
    assert set(notified(ws)) == {"apple", "amazon"}
    assert run_once(ws, date(2022, 10, 13)).summary().count("notify") == 0


def test_filters_and_thresholds(purge_ws: Workspace, receiver: Receiver,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    ws = with_notify(purge_ws, {
        "apple_only": webhook(companies=["apple"]),
        "spikes": webhook(kinds=["spike"]),
        "off": webhook(enabled=False, url_env="UNSET_BUT_DISABLED"),
    })
    run_once(ws, PURGE)
    assert len(receiver.posts) == 1
    assert "Apple" in receiver.posts[0].body["text"]
    assert "Amazon" not in receiver.posts[0].body["text"]
    assert set(notified(ws)) == {"apple"}  # amazon: selected by no notifier, never sent
    quiet = with_notify(purge_ws, {"crit": webhook(min_severity="critical")})
    report = send_notifications(quiet, PURGE)
    assert [o.status for o in report.outcomes] == ["ok"]  # amazon is critical too
    assert len(receiver.posts) == 2


def test_a_notifier_that_cannot_start_keeps_the_alerts(purge_ws: Workspace) -> None:
    ws = with_notify(purge_ws, {"slack": webhook("NO_SUCH_HOOK_ENV")})
    result = run_once(ws, PURGE)
    assert result.exit_code == 2
    assert "notify slack failed: [notify.slack] url_env reads environment variable " \
           "NO_SUCH_HOOK_ENV" in result.summary()
    assert notified(ws) == {}


# -- plugins and config -------------------------------------------------------------------


def test_builtins_are_registered_and_kinds_match() -> None:
    assert {"webhook", "email"} <= set(available_notifiers())
    assert load_notifier_class("webhook") is WebhookNotifier
    assert set(NotifyKind.__args__) == set(KINDS)
    with pytest.raises(ConfigError, match="unknown notifier type 'pager'"):
        load_notifier_class("pager")


def write_config(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(body, encoding="utf-8")
    return cfg


def test_config_validates_notify_tables(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, """
[notify.slack]
type = "webhook"
url_env = "SLACK_URL"
colour = "red"
min_severity = "loud"

[notify.pager]
type = "pagerduty"

[notify.mail]
type = "email"
host = "smtp.example.org"
to = ["a@example.org"]

[notify.nourl]
type = "webhook"

[notify.notype]
url = "https://example.org/hook"
""")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    problems = "\n".join(info.value.problems)
    assert "unknown key 'notify.slack.colour'" in problems
    assert "'notify.slack.min_severity'" in problems and "'loud'" in problems
    assert "'notify.pager.type': unknown notifier type 'pagerduty'" in problems
    assert "email, webhook" in problems
    assert "'notify.mail.sender' is required" in problems
    assert "notify.nourl" in problems and "url_env" in problems
    assert "'notify.notype.type' is required" in problems


def test_config_accepts_good_notify_tables(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, """
[alerts]
min_severity = "critical"

[notify.slack]
type = "webhook"
url_env = "SLACK_WEBHOOK_URL"
timeout = 10
kinds = ["drop", "spike"]

[notify.mail]
type = "email"
host = "smtp.example.org"
username = "tracker"
password_env = "SMTP_PASSWORD"
sender = "tracker@example.org"
to = ["oncall@example.org"]
""")
    settings = load_settings(cfg)
    assert settings.notify["slack"]["kinds"] == ["drop", "spike"]


# -- Slack control sequences from data ------------------------------------------------------

HOSTILE = "<!channel> <http://evil.example|Apple support> & <@U0ADMIN>"
ENTITY = re.compile(r"&(amp|lt|gt);")


def _strings(node: Any) -> Iterator[str]:
    """Every string value in a JSON document, at any depth."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)


def _assert_slack_safe(message: dict[str, Any]) -> None:
    """No raw < or >, and every & starts one of Slack's three entities (none doubled)."""
    for text in _strings(message):
        assert "<" not in text and ">" not in text, text
        assert text.count("&") == len(ENTITY.findall(text)), text
        assert "&amp;lt;" not in text and "&amp;amp;" not in text, text


@pytest.mark.parametrize("include_alerts", [False, True])
def test_webhook_escapes_control_sequences_in_every_field(
        receiver: Receiver, include_alerts: bool) -> None:
    """A company name (and metric, source, event id) carrying <!channel> and a disguised
    link must reach Slack as text in the fallback ``text`` as much as in the blocks."""
    evil = replace(APPLE, company_name=HOSTILE, metric="<!here>", source="<#C0GENERAL>",
                   event_id="ev<x>&1")
    other = replace(AMAZON, company_name="AT&T <b>", event_id="ev<x>&1")
    hook = WebhookNotifier.from_config("slack", webhook(include_alerts=include_alerts),
                                       {"TEST_HOOK_URL": receiver.url})
    hook.send([evil, other], NotifyContext(PURGE))
    (post,) = receiver.posts
    body = post.body
    records = body.pop("alerts", None)
    assert set(body) == {"text", "blocks"}
    _assert_slack_safe(body)
    header = body["blocks"][0]["text"]["text"]
    sections = [b["text"]["text"] for b in body["blocks"] if b["type"] == "section"]
    context = body["blocks"][-1]["elements"][0]["text"]
    # escaped, not dropped: Slack decodes the entities back to the names as written
    for field_text in (body["text"], header, sections[0], context):
        assert HOSTILE in html.unescape(field_text), field_text
    assert "AT&amp;T &lt;b&gt;" in body["text"] and "AT&amp;T &lt;b&gt;" in sections[1]
    assert "metric &lt;!here&gt;" in body["text"] and "metric &lt;!here&gt;" in sections[0]
    assert "source &lt;#C0GENERAL&gt;" in body["text"]
    assert "-&gt;" in body["text"]  # the fallback's own arrows are text too
    if include_alerts:  # the machine-readable records stay exact
        assert records is not None
        assert {r["company_name"] for r in records} == {HOSTILE, "AT&T <b>"}
    else:
        assert records is None


def test_webhook_caps_escaped_text_without_splitting_an_entity() -> None:
    """Escaping lengthens a name (< is 4 characters as &lt;); the caps are on what is sent
    and never leave half an entity behind."""
    long_name = "<" * 400 + "&" * 400
    alert = replace(APPLE, company_name=long_name, event_id=None)
    body = build_payload([alert], NotifyContext(PURGE), max_alerts=5)
    _assert_slack_safe(body)
    header = body["blocks"][0]["text"]["text"]
    section = body["blocks"][1]["text"]["text"]
    assert len(header) <= 150 and header.endswith("&lt;…")
    assert len(section) <= 3000 and section.endswith("…")


def test_each_message_links_the_days_report_when_base_url_is_set(
        purge_ws: Workspace, receiver: Receiver, smtp_server: Mailbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tracker.config import ReportSettings

    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    ws = with_notify(purge_ws, {"slack": webhook(), "mail": mail(smtp_server)})
    ws = Workspace(ws.settings.model_copy(update={"report": ReportSettings(
        base_url="https://reports.example.org/tracker/")}), ws.store)
    run_once(ws, PURGE)
    link = "https://reports.example.org/tracker/2022-10-11/index.html"
    body = receiver.posts[0].body
    assert f"Report: {link}" in body["text"]
    assert any(f"Report: {link}" in e["text"] for b in body["blocks"] if b["type"] == "context"
               for e in b["elements"])
    (envelope,) = smtp_server.messages
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert f"Report: {link}" in msg.get_body(("plain",)).get_content()
    assert f'href="{link}"' in msg.get_body(("html",)).get_content()


def test_no_base_url_no_link(receiver: Receiver) -> None:
    hook = WebhookNotifier.from_config("slack", webhook(), {"TEST_HOOK_URL": receiver.url})
    hook.send([APPLE], NotifyContext(PURGE))
    assert "Report:" not in json.dumps(receiver.posts[0].body)


def test_a_population_event_is_announced_once_next_to_the_alerts(
    purge_ws: Workspace, receiver: Receiver, smtp_server: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tracker.store import events as event_store
    from tracker.store.schema import population_events, source_state

    monkeypatch.setenv("TEST_HOOK_URL", receiver.url)
    ws = with_notify(purge_ws, {"slack": webhook(), "mail": mail(smtp_server)})
    result = run_once(ws, PURGE)
    assert "announced 1 platform event(s)" in result.summary()
    line = ("Platform event pop-employees-down-2022-10-11: 25% of 8 employees series moved "
            "down on 2022-10-11 (median -41.7%); 0 of 2 too small to alert alone")
    assert line in receiver.posts[0].body["text"]
    msg = email.message_from_bytes(smtp_server.messages[0].content, policy=email.policy.default)
    assert line in msg.get_body(("plain",)).get_content()
    assert "Platform event pop-employees-down-2022-10-11" in msg.get_body(("html",)).get_content()
    assert event_store.pending(ws.store, PURGE, PURGE).empty
    # an event not yet announced goes out alone when there is no new alert
    with ws.store.transaction() as conn:
        conn.execute(population_events.update().values(notified_at=None))
        conn.execute(source_state.delete().where(source_state.c.key.like("event:%")))
    nxt = run_once(ws, date(2022, 10, 12))
    assert len(receiver.posts) == 2 and len(smtp_server.messages) == 2
    body = receiver.posts[1].body
    assert body["text"].startswith("tracker: 1 new platform event(s) on 2022-10-11")
    assert line in body["text"] and "announced 1 platform event(s)" in nxt.summary()
    run_once(ws, date(2022, 10, 13))
    assert len(receiver.posts) == 2 and len(smtp_server.messages) == 2
