"""The ``alertmanager`` notifier against a real HTTP receiver (pytest-httpserver on
127.0.0.1): Alertmanager's webhook payload checked field by field, truncation and
grouping, credentials from the environment, retries and refusals, and the verdict
lifecycle through real daily runs (firing, then one resolved or confirmed update with
the same fingerprint, then silence). Nothing is mocked."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from test_notify import AMAZON, APPLE, PURGE
from test_verdicts import BASE, DROP, HALF, Daily

from tracker.errors import ConfigError, NotifyError
from tracker.notify.alertmanager import AlertmanagerNotifier, AlertmanagerSettings
from tracker.notify.base import NotifyContext, load_notifier_class

PATH = "/api/alerts/T0SECRET"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
ZERO = "0001-01-01T00:00:00Z"
TOP = {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
       "commonLabels", "commonAnnotations", "externalURL", "alerts"}
ALERT = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
REPORT = "https://reports.example.org/tracker/2022-10-11/index.html"
GLITCH = replace(APPLE, id=9, fingerprint="9f" * 16, company="binance", company_name="Binance",
                 kind="glitch", verdict="glitch", severity="warning", event_id=None,
                 confirmed_on=PURGE + timedelta(days=2))


@pytest.fixture
def server() -> Iterator[HTTPServer]:
    with HTTPServer(host="127.0.0.1") as srv:
        yield srv


def accept(server: HTTPServer) -> None:
    server.expect_request(PATH, method="POST").respond_with_data("ok")


def bodies(server: HTTPServer) -> list[dict[str, Any]]:
    """The JSON of every POST the receiver answered with 2xx."""
    return [json.loads(req.get_data()) for req, resp in server.log if resp.status_code < 300]


def notifier(server: HTTPServer, environ: dict[str, str] | None = None,
             **extra: Any) -> AlertmanagerNotifier:
    table = {"type": "alertmanager", "url_env": "AM_URL", "backoff": 0.01, **extra}
    built = AlertmanagerNotifier.from_config(
        "oncall", table, {"AM_URL": server.url_for(PATH), **(environ or {})})
    assert isinstance(built, AlertmanagerNotifier)
    return built


def instant(text: str) -> datetime:
    assert RFC3339.fullmatch(text), text
    return datetime.fromisoformat(text)


def test_payload_is_alertmanagers_webhook_shape(server: HTTPServer) -> None:
    accept(server)
    am = notifier(server, external_url="https://tracker.example.org", labels={"team": "hr"})
    am.send([AMAZON, GLITCH, APPLE], NotifyContext(PURGE, report_url=REPORT))
    (request, _), = server.log
    assert request.headers["Content-Type"].startswith("application/json")
    (body,) = bodies(server)
    assert set(body) == TOP
    assert body["version"] == "4"
    assert body["groupKey"] == '{}:{alertname="HeadcountAnomaly"}'
    assert body["truncatedAlerts"] == 0
    assert body["status"] == "firing"  # two of the three still are
    assert body["receiver"] == "oncall"
    assert body["groupLabels"] == {"alertname": "HeadcountAnomaly"}
    assert body["externalURL"] == "https://tracker.example.org"
    alerts = body["alerts"]
    assert [a["labels"]["company"] for a in alerts] == ["apple", "amazon", "binance"]
    for a in alerts:
        assert set(a) == ALERT
        assert all(isinstance(v, str) and v for v in a["labels"].values())
        assert re.fullmatch(r"[0-9a-f]{16}", a["fingerprint"])
        assert instant(a["startsAt"]) == datetime.fromisoformat("2022-10-11T00:00:00+00:00")
    assert len({a["fingerprint"] for a in alerts}) == 3
    apple, amazon, glitch = alerts
    assert apple["labels"] == {
        "alertname": "HeadcountAnomaly", "company": "apple", "metric": "employees",
        "source": "linkedin", "day": "2022-10-11", "kind": "drop", "severity": "critical",
        "verdict": "provisional", "event": "ev-2022-10-11-drop", "team": "hr"}
    assert apple["status"] == "firing" and apple["endsAt"] == ZERO
    notes = apple["annotations"]
    assert notes["summary"] == "Apple: drop -50.6% on 2022-10-11"
    assert "576,562 -> 284,829" in notes["description"] and "alert #7" in notes["description"]
    assert notes["report_url"] == REPORT
    assert notes["chart"] == "https://reports.example.org/tracker/2022-10-11/apple.png"
    assert apple["generatorURL"] == f"{REPORT}#chart-apple"
    # a glitch is over: resolved, ended the day it was decided, no chart (not charted)
    assert glitch["status"] == "resolved" and glitch["labels"]["verdict"] == "glitch"
    assert instant(glitch["endsAt"]) == datetime.fromisoformat("2022-10-13T00:00:00+00:00")
    assert instant(glitch["endsAt"]) > instant(glitch["startsAt"])
    assert "chart" not in glitch["annotations"]
    # what every listed alert shares, and only that
    common = body["commonLabels"]
    assert common == {"alertname": "HeadcountAnomaly", "day": "2022-10-11",
                      "metric": "employees", "source": "linkedin", "team": "hr"}
    assert body["commonAnnotations"] == {"report_url": REPORT}
    assert amazon["labels"]["severity"] == "critical" and "event" in amazon["labels"]


def test_status_rules_and_no_report_link(server: HTTPServer) -> None:
    accept(server)
    am = notifier(server)
    dismissed = replace(APPLE, status="dismissed")  # an analyst closed it: over
    withdrawn = replace(AMAZON, verdict="withdrawn")
    confirmed = replace(APPLE, id=10, fingerprint="ab" * 16, verdict="confirmed")
    am.send([dismissed, withdrawn], NotifyContext(PURGE + timedelta(days=3)))
    am.send([confirmed], NotifyContext(PURGE + timedelta(days=3)))
    over, held = bodies(server)
    assert over["status"] == "resolved"
    assert {a["status"] for a in over["alerts"]} == {"resolved"}
    assert {a["endsAt"] for a in over["alerts"]} == {"2022-10-14T00:00:00Z"}  # the run's day
    assert held["status"] == "firing" and held["alerts"][0]["endsAt"] == ZERO
    for body in (over, held):
        assert body["externalURL"] == ""
        for a in body["alerts"]:
            assert a["generatorURL"] == ""
            assert set(a["annotations"]) == {"summary", "description"}


def test_max_alerts_truncates_and_group_by_splits(server: HTTPServer) -> None:
    accept(server)
    many = [replace(APPLE, id=i, fingerprint=f"{i:032x}", company=f"c{i}",
                    severity="warning" if i % 2 else "critical") for i in range(7)]
    notifier(server, max_alerts=3).send(many, NotifyContext(PURGE))
    (one,) = bodies(server)
    assert len(one["alerts"]) == 3 and one["truncatedAlerts"] == 4
    assert {a["labels"]["severity"] for a in one["alerts"]} == {"critical"}  # worst first
    server.clear_log()
    notifier(server, group_by=["alertname", "severity"]).send(many, NotifyContext(PURGE))
    groups = {b["groupLabels"]["severity"]: b for b in bodies(server)}
    assert set(groups) == {"critical", "warning"}
    assert groups["critical"]["groupKey"] == \
        '{}:{alertname="HeadcountAnomaly", severity="critical"}'
    assert len(groups["critical"]["alerts"]) == 4 and len(groups["warning"]["alerts"]) == 3
    assert groups["warning"]["commonLabels"]["severity"] == "warning"
    assert all(b["truncatedAlerts"] == 0 for b in groups.values())


def test_bearer_and_basic_auth_come_from_the_environment(server: HTTPServer) -> None:
    accept(server)
    notifier(server, {"AM_TOKEN": "tok-3141592653"},
             bearer_token_env="AM_TOKEN").send([APPLE], NotifyContext(PURGE))
    notifier(server, {"AM_PW": "pw-2718281828"}, username="tracker",
             password_env="AM_PW").send([APPLE], NotifyContext(PURGE))
    (bearer, _), (basic, _) = server.log
    assert bearer.headers["Authorization"] == "Bearer tok-3141592653"
    scheme, _, pair = basic.headers["Authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(pair) == b"tracker:pw-2718281828"
    with pytest.raises(ConfigError, match=r"\[notify.oncall\] bearer_token_env.*AM_UNSET"):
        notifier(server, bearer_token_env="AM_UNSET")
    with pytest.raises(ConfigError, match=r"in clear to example\.org; use an https:"):
        AlertmanagerNotifier.from_config("oncall", {
            "type": "alertmanager", "url": "http://example.org/hook",
            "bearer_token_env": "AM_TOKEN"}, {"AM_TOKEN": "tok-3141592653"})


def test_settings_rules() -> None:
    base = {"type": "alertmanager", "url_env": "AM_URL"}
    assert AlertmanagerSettings.model_validate(base).max_alerts == 0  # all, as upstream
    for bad, needle in (({"username": "u"}, "go together"),
                        ({"username": "u", "password_env": "P", "bearer_token_env": "T"},
                         "not both"),
                        ({"labels": {"9lives": "x"}}, "not a Prometheus label name"),
                        ({"labels": {"severity": "x"}}, "set by the tracker"),
                        ({"group_by": ["team"]}, "unknown label"),
                        ({"password": "hunter2"}, "password"),
                        ({"max_alerts": -1}, "max_alerts")):
        with pytest.raises(ValueError, match=needle):
            AlertmanagerSettings.model_validate({**base, **bad})
    assert load_notifier_class("alertmanager") is AlertmanagerNotifier


def test_retries_a_503_and_reports_a_400(server: HTTPServer) -> None:
    for _ in range(2):
        server.expect_oneshot_request(PATH, method="POST").respond_with_data("busy", 503)
    accept(server)
    notifier(server, {"AM_TOKEN": "tok-3141592653"}, bearer_token_env="AM_TOKEN",
             retries=3).send([APPLE], NotifyContext(PURGE))
    assert [resp.status_code for _, resp in server.log] == [503, 503, 200]
    assert all(req.headers["Authorization"] == "Bearer tok-3141592653"
               for req, _ in server.log)  # every retry carries the credentials
    server.clear()
    server.expect_request(PATH, method="POST").respond_with_data("bad labels", 400)
    with pytest.raises(NotifyError) as info:
        notifier(server, {"AM_TOKEN": "tok-3141592653"}, bearer_token_env="AM_TOKEN"
                 ).send([APPLE], NotifyContext(PURGE))
    message = str(info.value)
    assert message.startswith("alertmanager POST http://127.0.0.1:")
    assert "HTTP 400" in message and "(bad labels)" in message
    assert "rejected the payload" in message
    assert len(server.log) == 1  # a 400 will not mend: not retried
    for secret in ("T0SECRET", "tok-3141592653"):
        assert secret not in message


# -- the verdict lifecycle through real daily runs ---------------------------------------


@pytest.fixture
def daily(tmp_path: Path, db_url: str, server: HTTPServer) -> Iterator[Daily]:
    accept(server)
    server.expect_request("/slack", method="POST").respond_with_data("ok")
    d = Daily(tmp_path, db_url, {
        "oncall": {"type": "alertmanager", "url": server.url_for(PATH), "backoff": 0.01},
        "slack": {"type": "webhook", "url": server.url_for("/slack"), "backoff": 0.01}})
    yield d
    d.ws.close()


def posts(server: HTTPServer, path: str = PATH) -> list[dict[str, Any]]:
    return [json.loads(req.get_data()) for req, _ in server.log if req.path == path]


def test_a_paged_drop_resolves_once_as_a_glitch_and_confirms_once(
        daily: Daily, server: HTTPServer) -> None:
    """Acme and Gamma halve and page; Acme comes back (glitch: one resolved update,
    same fingerprint), Gamma holds (confirmed: one firing update); quiet runs send
    nothing, through either notifier."""
    values = {"Acme": 500, "Beta": BASE["Beta"], "Gamma": HALF["Gamma"],
              "Delta": BASE["Delta"]}
    daily.run(DROP, values)
    (first,) = posts(server)
    assert first["status"] == "firing"
    fired = {a["labels"]["company"]: a for a in first["alerts"]}
    assert set(fired) == {"acme", "gamma"}
    assert {a["labels"]["verdict"] for a in fired.values()} == {"provisional"}
    assert {a["endsAt"] for a in fired.values()} == {ZERO}

    day1 = DROP + timedelta(days=1)
    daily.run(day1, {**values, "Acme": 1001})
    assert len(posts(server)) == 2 and len(posts(server, "/slack")) == 2
    update = posts(server)[1]
    (acme,) = update["alerts"]  # exactly one change: Acme's
    assert update["status"] == acme["status"] == "resolved"
    assert acme["fingerprint"] == fired["acme"]["fingerprint"]
    assert acme["labels"]["verdict"] == "glitch"
    # routed as it fired: the kind and severity it was notified with
    assert (acme["labels"]["kind"], acme["labels"]["severity"]) == (
        fired["acme"]["labels"]["kind"], fired["acme"]["labels"]["severity"])
    assert "now glitch (was provisional drop)" in acme["annotations"]["description"]
    assert instant(acme["startsAt"]) == instant(fired["acme"]["startsAt"])
    assert instant(day1.isoformat() + "T00:00:00Z") <= instant(acme["endsAt"])
    assert "now glitch" in posts(server, "/slack")[1]["text"]

    daily.run(DROP + timedelta(days=2), {**values, "Acme": 1000})
    assert len(posts(server)) == 2 and len(posts(server, "/slack")) == 2  # nothing new

    for k in (3, 4):
        daily.run(DROP + timedelta(days=k), {**values, "Acme": 999})
    assert len(posts(server)) == 3, [p["alerts"][0]["labels"] for p in posts(server)]
    confirmed = posts(server)[2]
    (gamma,) = confirmed["alerts"]
    assert confirmed["status"] == gamma["status"] == "firing" and gamma["endsAt"] == ZERO
    assert gamma["labels"]["verdict"] == "confirmed"
    assert gamma["fingerprint"] == fired["gamma"]["fingerprint"]
    daily.run(DROP + timedelta(days=5), {**values, "Acme": 1000})
    assert len(posts(server)) == 3 and len(posts(server, "/slack")) == 3
    assert all(a["fingerprint"] in {f["fingerprint"] for f in fired.values()}
               for p in posts(server) for a in p["alerts"])


def test_the_test_message_is_labelled_and_expires(server: HTTPServer) -> None:
    accept(server)
    notifier(server).send_test(NotifyContext(date.today()))
    (body,) = bodies(server)
    (alert,) = body["alerts"]
    assert alert["labels"]["test"] == "true" and body["commonLabels"]["test"] == "true"
    assert "TEST MESSAGE" in alert["annotations"]["summary"]
    assert alert["status"] == "firing"
    ends = instant(alert["endsAt"])
    assert timedelta(0) < ends - datetime.now(ends.tzinfo) <= timedelta(minutes=5)
