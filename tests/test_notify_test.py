"""``tracker notify --test``: the real CLI in a subprocess sends one marked test message
through a real webhook receiver (pytest-httpserver), a real SMTP server (aiosmtpd),
an alertmanager receiver and a notifier whose port refuses connections; one line per
notifier, secrets never shown, exit 0 when all worked and 3 when any failed."""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from helpers import no_traceback, python_env, tracker_command
from pytest_httpserver import HTTPServer
from test_notify import Mailbox, _free_port, smtp_server  # noqa: F401

from tracker.errors import ConfigError
from tracker.notify import send_test_messages

HOOK = "/services/T0SECRET/B0SECRET/xoxSecretToken123"
AM = "/alertmanager/receiver"
PASSWORD = "s3cret-smtp-pw"  # what the test_notify SMTP server accepts
TOKEN = "am-token-5551234"


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    with HTTPServer(host="127.0.0.1") as srv:
        srv.expect_request(HOOK, method="POST").respond_with_data("ok")
        srv.expect_request(AM, method="POST").respond_with_data("ok")
        yield srv


def config(tmp_path: Path, box: Mailbox, dead_port: int) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"""
[notify.slack]
type = "webhook"
url_env = "TEST_HOOK_URL"
backoff = 0.01

[notify.mail]
type = "email"
host = "127.0.0.1"
port = {box.port}
starttls = false
username = "tracker"
password_env = "TEST_SMTP_PW"
sender = "tracker@example.org"
to = ["oncall@example.org"]
timeout = 5

[notify.router]
type = "alertmanager"
url_env = "TEST_AM_URL"
bearer_token_env = "TEST_AM_TOKEN"

[notify.dead]
type = "alertmanager"
url = "http://127.0.0.1:{dead_port}/hook"
retries = 0

[notify.off]
type = "webhook"
enabled = false
url = "http://127.0.0.1:{dead_port}/off"
retries = 0
""", encoding="utf-8")
    return cfg


def notify(cfg: Path, server: HTTPServer, *args: str, password: str = PASSWORD
           ) -> subprocess.CompletedProcess:
    env = {**python_env(), "TEST_HOOK_URL": server.url_for(HOOK), "TEST_SMTP_PW": password,
           "TEST_AM_URL": server.url_for(AM), "TEST_AM_TOKEN": TOKEN}
    return subprocess.run(tracker_command("--config", str(cfg), "notify", *args),
                          cwd=cfg.parent, capture_output=True, text=True, timeout=120, env=env)


def test_notify_test_reports_each_notifier_and_exits_3_naming_the_failed_one(
        tmp_path: Path, server: HTTPServer, smtp_server: Mailbox) -> None:  # noqa: F811
    dead = _free_port()
    proc = notify(config(tmp_path, smtp_server, dead), server, "--test")
    no_traceback(proc)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == ["slack: ok", "mail: ok", "router: ok"]
    assert lines[3].startswith(f"dead: failed: alertmanager POST http://127.0.0.1:{dead}/…: "
                               "ConnectionRefusedError")
    assert lines[4] == "3 of 4 notifier(s) ok; failed: dead"
    assert len(lines) == 5  # the disabled notifier is not tested
    for secret in ("T0SECRET", "xoxSecretToken123", PASSWORD, TOKEN):
        assert secret not in proc.stdout + proc.stderr

    # each receiver got one message, marked as a test, through its real path
    hook, router = (json.loads(req.get_data()) for req, _ in server.log)
    assert "TEST MESSAGE from tracker notify --test" in hook["text"]
    (am_request, _) = server.log[1]
    assert am_request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert router["version"] == "4" and router["alerts"][0]["labels"]["test"] == "true"
    (envelope,) = smtp_server.messages
    msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert "TEST MESSAGE" in msg["Subject"]
    assert smtp_server.logins == [("tracker", PASSWORD)]


def test_only_and_an_smtp_login_refused(tmp_path: Path, server: HTTPServer,
                                        smtp_server: Mailbox) -> None:  # noqa: F811
    cfg = config(tmp_path, smtp_server, _free_port())
    alone = notify(cfg, server, "--test", "--only", "slack")
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert alone.stdout.splitlines() == ["slack: ok", "1 of 1 notifier(s) ok"]
    named = notify(cfg, server, "--test", "--only", "slack", "--only", "off")
    assert named.returncode == 3
    lines = named.stdout.splitlines()
    assert lines[0] == "slack: ok"
    assert lines[1].startswith("off: failed: webhook POST")  # disabled, but asked for by name
    assert len(server.log) == 2
    refused = notify(cfg, server, "--test", "--only", "mail", password="wrong-password")
    no_traceback(refused)
    assert refused.returncode == 3
    first, summary = refused.stdout.splitlines()
    assert first.startswith(f"mail: failed: email via 127.0.0.1:{smtp_server.port}: "
                            "login as 'tracker' refused (535)")
    assert "$TEST_SMTP_PW" in first and "wrong-password" not in refused.stdout
    assert summary == "0 of 1 notifier(s) ok; failed: mail"
    assert not smtp_server.messages


def test_usage_errors_are_one_line(tmp_path: Path, server: HTTPServer,
                                   smtp_server: Mailbox) -> None:  # noqa: F811
    cfg = config(tmp_path, smtp_server, _free_port())
    for args, needle in ((("--test", "--only", "pager"),
                          "no [notify.pager] in the configuration; configured: slack, mail"),
                         ((), "tracker notify needs --test")):
        proc = notify(cfg, server, *args)
        no_traceback(proc)
        assert proc.returncode == 3 and needle in proc.stderr, proc.stderr
        assert proc.stdout == ""
    assert not server.log and not smtp_server.messages


def test_the_library_function(server: HTTPServer) -> None:
    tables = {"slack": {"type": "webhook", "url_env": "HOOK"},
              "nourl": {"type": "webhook", "url_env": "UNSET_HOOK"}}
    outcomes = send_test_messages(tables, date(2022, 10, 11),
                                  environ={"HOOK": server.url_for(HOOK)})
    assert [(o.name, o.status) for o in outcomes] == [("slack", "ok"), ("nourl", "failed")]
    assert "UNSET_HOOK" in (outcomes[1].reason or "")
    (request, _), = server.log
    assert "2022-10-11" in json.loads(request.get_data())["text"]
    with pytest.raises(ConfigError, match="no enabled"):
        send_test_messages({"x": {"type": "webhook", "enabled": False}}, date(2022, 10, 11))
