"""HTTP sources against a real local server: faults, retries, rate limits, secrets, config.

Nothing in requests/urllib3 is mocked; timeouts and backoffs are small so the file
stays fast while still crossing real sockets.
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import date
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from httpfixtures import (
    FakeHttpServer,
    fake_http,  # noqa: F401 - re-exported the way conftest.py would
)
from pydantic import ValidationError
from sqlalchemy import select

from tracker.cli import main
from tracker.errors import ConfigError, FatalSourceError
from tracker.records import CompanyRef, Failure, Observation
from tracker.sources.base import SourceContext
from tracker.sources.html_page import HtmlPageSource
from tracker.sources.http import HttpSource
from tracker.sources.http_json import HttpJsonSource
from tracker.sources.http_values import REDACTOR, lookup, parse_count
from tracker.sources.pdl import PeopleDataLabsSource
from tracker.store.schema import run_sources
from tracker.workspace import open_workspace

DAY = date(2022, 10, 12)
SECRET = "sk-live-Zq9!x/Secret+Key"
FAST: dict[str, Any] = {
    "timeout": [0.5, 0.25],
    "retries": 2,
    "backoff": 0.02,
    "backoff_jitter": 0.01,
    "workers": 4,
}


@pytest.fixture
def srv() -> Iterator[FakeHttpServer]:
    with FakeHttpServer() as server:
        for i in range(8):
            server.add_company(f"c{i}", 1000 + i, website=f"c{i}.example", linkedin=f"li/c{i}")
        yield server


def companies(n: int = 8) -> list[CompanyRef]:
    return [
        CompanyRef(f"c{i}", f"Company {i}", {"website": f"c{i}.example", "linkedin": f"li/c{i}"})
        for i in range(n)
    ]


def build(cls: type[HttpSource], env: Mapping[str, str] | None = None, **raw: Any) -> HttpSource:
    settings = cls.Settings.model_validate({"type": cls.name, **FAST, **raw})
    return cls("test", settings, SourceContext(Path(".")), environ=env or {})


def json_source(srv: FakeHttpServer, env: Mapping[str, str] | None = None, **raw: Any) -> Any:
    raw.setdefault("url", srv.url + "/api/companies/{company}?date={day}")
    raw.setdefault("value_path", "data.employee_count")
    return build(HttpJsonSource, env, **raw)


def run(
    source: HttpSource, refs: list[CompanyRef] | None = None
) -> tuple[dict[str | None, Observation], dict[str | None, Failure]]:
    results = list(source.fetch(companies() if refs is None else refs, DAY))
    source.close()
    obs = {r.company: r for r in results if isinstance(r, Observation)}
    fails = {r.company: r for r in results if isinstance(r, Failure)}
    return obs, fails


# -- http_json: the happy paths -----------------------------------------------------------


def test_json_source_reads_every_company(srv: FakeHttpServer) -> None:
    obs, fails = run(json_source(srv))
    assert fails == {}
    assert {c: o.value for c, o in obs.items()} == {f"c{i}": 1000 + i for i in range(8)}
    assert {(o.as_of, o.source, o.metric) for o in obs.values()} == {(DAY, "test", "employees")}
    assert srv.log[0].query["date"] == ["2022-10-12"]


@pytest.mark.parametrize("path", ["data.employee_count", "items.0.count", "/data/employee_count"])
def test_value_path_forms(srv: FakeHttpServer, path: str) -> None:
    obs, fails = run(json_source(srv, value_path=path), companies(2))
    assert not fails and obs["c1"].value == 1001


def test_date_path_sets_as_of(srv: FakeHttpServer) -> None:
    srv.payloads["c0"] = {"data": {"employee_count": 5, "as_of": "2022-10-01T06:00:00Z"}}
    obs, _ = run(json_source(srv, date_path="data.as_of"), companies(1))
    assert obs["c0"].as_of == date(2022, 10, 1)


def test_placeholders_are_filled_and_quoted(srv: FakeHttpServer) -> None:
    refs = [CompanyRef("c0", "Acme & Co", {"external_id": "c0", "website": "c0.example"})]
    url = srv.url + "/api/companies/{external_id}?date={day}&n={name}&w={website}&id={company}"
    obs, fails = run(json_source(srv, url=url, params={"q": "{name}"}), refs)
    assert not fails and obs["c0"].value == 1000
    query = srv.log[0].query
    assert query["n"] == ["Acme & Co"] and query["q"] == ["Acme & Co"]
    assert query["w"] == ["c0.example"] and query["id"] == ["c0"]


def test_missing_placeholder_is_a_clear_fatal_failure(srv: FakeHttpServer) -> None:
    refs = [CompanyRef("c0", "Zero", {"website": "c0.example"})]
    _, fails = run(json_source(srv, url=srv.url + "/api/companies/{crunchbase}"), refs)
    reason = fails["c0"].reason
    assert not fails["c0"].retriable
    assert "{crunchbase}" in reason and "external_ids.crunchbase" in reason and "website" in reason
    assert srv.log == []


def test_headers_params_and_user_agent_are_sent(srv: FakeHttpServer) -> None:
    env = {"TOKEN": SECRET, "QKEY": "query-secret-1"}
    source = json_source(
        srv,
        env,
        headers={"Accept": "application/json"},
        header_env={"Authorization": {"env": "TOKEN", "prefix": "Bearer "}},
        params={"fields": "count"},
        params_env={"api_key": "QKEY"},
    )
    _, fails = run(source, companies(1))
    assert not fails
    sent = srv.log[0]
    assert sent.headers["Authorization"] == f"Bearer {SECRET}"
    assert sent.headers["Accept"] == "application/json"
    assert (
        sent.headers["User-Agent"].startswith("tracker/")
        and "+https://" in sent.headers["User-Agent"]
    )
    assert sent.query["fields"] == ["count"] and sent.query["api_key"] == ["query-secret-1"]


def test_pool_is_sized_to_workers(srv: FakeHttpServer) -> None:
    source = json_source(srv, workers=7)
    adapter = source.client.session.get_adapter(srv.url)
    assert source.workers == 7 and adapter._pool_maxsize == 7  # type: ignore[attr-defined]


# -- faults --------------------------------------------------------------------------------


def test_500_twice_then_ok_is_retried(srv: FakeHttpServer) -> None:
    srv.inject("c1", status=500, times=2)
    obs, fails = run(json_source(srv), companies(2))
    assert not fails and obs["c1"].value == 1001
    assert len(srv.requests_for("c1")) == 3 and len(srv.requests_for("c0")) == 1


def test_persistent_500_is_a_retriable_failure_after_bounded_retries(srv: FakeHttpServer) -> None:
    srv.inject("c1", status=503)
    _, fails = run(json_source(srv, retries=3), companies(2))
    assert fails["c1"].retriable and "HTTP 503" in fails["c1"].reason
    assert len(srv.requests_for("c1")) == 4


def test_retry_after_is_honoured(srv: FakeHttpServer) -> None:
    srv.inject("c0", status=429, headers={"Retry-After": "1"}, times=1)
    obs, fails = run(json_source(srv), companies(1))
    assert not fails and obs["c0"].value == 1000
    first, second = srv.requests_for("c0")
    assert second.time - first.time >= 1.0


def test_retry_after_is_capped(srv: FakeHttpServer) -> None:
    srv.inject("c0", status=429, headers={"Retry-After": "3600"}, times=1)
    started = time.monotonic()
    obs, _ = run(json_source(srv, retry_after_max=0.2), companies(1))
    assert obs["c0"].value == 1000 and time.monotonic() - started < 3


def test_persistent_429_is_retriable(srv: FakeHttpServer) -> None:
    srv.inject("c0", status=429, headers={"Retry-After": "0"})
    _, fails = run(json_source(srv, retries=1), companies(1))
    assert fails["c0"].retriable and "429" in fails["c0"].reason


def test_timeouts_are_retriable_and_quick(srv: FakeHttpServer) -> None:
    srv.inject("c2", delay=1.5)
    started = time.monotonic()
    obs, fails = run(json_source(srv, retries=1, timeout=[0.5, 0.2]), companies(4))
    elapsed = time.monotonic() - started
    assert fails["c2"].retriable and "timed out" in fails["c2"].reason
    assert len(obs) == 3 and elapsed < 1.5
    assert len(srv.requests_for("c2")) == 2


def test_one_slow_answer_is_retried(srv: FakeHttpServer) -> None:
    srv.inject("c0", delay=0.6, times=1)
    obs, fails = run(json_source(srv, timeout=[0.5, 0.2]), companies(1))
    assert not fails and obs["c0"].value == 1000


def test_dropped_connection_is_retried(srv: FakeHttpServer) -> None:
    srv.inject("c0", drop=True, times=1)
    obs, fails = run(json_source(srv), companies(1))
    assert not fails and obs["c0"].value == 1000


def test_a_body_cut_off_mid_transfer_is_retried(srv: FakeHttpServer) -> None:
    srv.inject("c0", cut=True, times=2)  # Content-Length promises more than is sent
    obs, fails = run(json_source(srv, retries=2), companies(2))
    assert not fails and obs["c0"].value == 1000 and obs["c1"].value == 1001
    assert len(srv.requests_for("c0")) == 3


def test_a_body_always_cut_off_fails_retriably_after_the_real_attempts(
    srv: FakeHttpServer,
) -> None:
    srv.inject("c0", cut=True)
    started = time.monotonic()
    obs, fails = run(json_source(srv, retries=2), companies(2))
    assert set(obs) == {"c1"} and fails["c0"].retriable
    reason = fails["c0"].reason
    assert "cut off" in reason and "after 3 attempts" in reason, reason
    assert len(srv.requests_for("c0")) == 3
    assert time.monotonic() - started < 2  # backoff 0.02 s doubling, not seconds


def test_cut_bodies_and_5xx_share_one_retry_budget(srv: FakeHttpServer) -> None:
    srv.inject("c0", status=503, times=1)
    srv.inject("c0", cut=True, times=1)
    srv.inject("c0", status=500, times=1)
    _, fails = run(json_source(srv, retries=2), companies(1))
    assert len(srv.requests_for("c0")) == 3, "3 attempts in all, not 3 per kind of fault"
    assert "HTTP 500" in fails["c0"].reason and "after 3 attempts" in fails["c0"].reason


def test_a_cut_html_page_is_retried(srv: FakeHttpServer) -> None:
    srv.inject("c0", cut=True, times=1)
    obs, fails = run(html_source(srv, selector=".employees"), companies(1))
    assert not fails and obs["c0"].value == 1000 and len(srv.requests_for("c0")) == 2


@pytest.mark.parametrize(
    ("retries", "attempts"), [(0, "after 1 attempt;"), (3, "after 4 attempts")]
)
def test_messages_count_the_attempts_really_made(
    srv: FakeHttpServer, retries: int, attempts: str
) -> None:
    srv.inject("c0", status=503, headers={"Retry-After": "0"})
    _, fails = run(json_source(srv, retries=retries), companies(1))
    assert attempts in fails["c0"].reason + ";", fails["c0"].reason
    assert "retries" not in fails["c0"].reason
    assert len(srv.requests_for("c0")) == retries + 1


def test_a_5xx_that_is_not_retried_says_one_attempt(srv: FakeHttpServer) -> None:
    srv.inject("c0", status=507)
    _, fails = run(json_source(srv, retries=3), companies(1))
    assert fails["c0"].retriable and "HTTP 507" in fails["c0"].reason
    assert "after 1 attempt" in fails["c0"].reason and "attempts" not in fails["c0"].reason
    assert len(srv.requests_for("c0")) == 1


def test_an_error_answer_quotes_the_start_of_its_body(srv: FakeHttpServer) -> None:
    srv.inject("c0", status=400, body=b'{"error": {"message": "unknown field \'size\'"}}')
    _, fails = run(json_source(srv), companies(1))
    assert "HTTP 400" in fails["c0"].reason and "unknown field" in fails["c0"].reason


def test_connection_refused_is_retriable_not_an_exception() -> None:
    with FakeHttpServer() as dead:
        url = dead.url
    source = build(HttpJsonSource, url=url + "/api/companies/{company}", value_path="x", retries=1)
    _, fails = run(source, companies(2))
    assert all(f.retriable for f in fails.values()) and len(fails) == 2
    assert "Connection" in fails["c0"].reason or "refused" in fails["c0"].reason
    assert "after 2 attempts" in fails["c0"].reason, fails["c0"].reason


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ({"truncate": True}, "not valid JSON"),
        ({"body": b"<!DOCTYPE html><p>Sign in</p>", "content_type": "text/html"}, "got HTML"),
        ({"status": 404}, "HTTP 404"),
        ({"status": 401}, "HTTP 401"),
        ({"status": 403}, "HTTP 403"),
        ({"body": b"", "content_type": "application/json"}, "empty response"),
    ],
)
def test_fatal_faults_are_not_retried(
    srv: FakeHttpServer, fault: dict[str, Any], expected: str
) -> None:
    srv.inject("c1", **fault)
    obs, fails = run(json_source(srv), companies(3))
    assert set(obs) == {"c0", "c2"}
    assert not fails["c1"].retriable and expected in fails["c1"].reason
    assert len(srv.requests_for("c1")) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "is null"),
        ("n/a", "does not start with a number"),
        ("error 429: rate limited", "'error 429: rate limited' is not a count"),
        ("12,5", "'12,5' is not a count"),
        (1234.6, "not a whole number"),
        (0, "must be positive"),
        (-12, "must be positive"),
        (True, "boolean"),
        ({"a": 1}, "dict"),
    ],
)
def test_bad_values_are_failures_not_observations(
    srv: FakeHttpServer, value: Any, expected: str
) -> None:
    srv.payloads["c0"] = {"data": {"employee_count": value}}
    obs, fails = run(json_source(srv), companies(1))
    assert obs == {} and not fails["c0"].retriable and expected in fails["c0"].reason


def test_missing_value_path_says_what_was_there(srv: FakeHttpServer) -> None:
    obs, fails = run(json_source(srv, value_path="data.headcount"), companies(1))
    assert obs == {}
    assert "no key 'headcount'" in fails["c0"].reason and "employee_count" in fails["c0"].reason


def test_one_company_per_fault_never_stops_the_others(srv: FakeHttpServer) -> None:
    srv.inject("c1", status=500)
    srv.inject("c2", truncate=True)
    srv.inject("c3", delay=1.0)
    srv.inject("c4", status=401)
    srv.inject("c5", body=b"<html></html>", content_type="text/html")
    obs, fails = run(json_source(srv, retries=1, timeout=[0.5, 0.2]), companies(8))
    assert set(obs) == {"c0", "c6", "c7"} and set(fails) == {"c1", "c2", "c3", "c4", "c5"}
    assert {c for c, f in fails.items() if f.retriable} == {"c1", "c3"}


# -- rate limit ------------------------------------------------------------------------------


def test_rate_limit_holds_across_workers(srv: FakeHttpServer) -> None:
    refs = [CompanyRef(f"c{i % 8}", "x") for i in range(25)]
    started = time.monotonic()
    _, fails = run(json_source(srv, rate_limit=25, workers=8), refs)
    elapsed = time.monotonic() - started
    assert not fails
    assert srv.rate() <= 25 * 1.1, srv.rate()
    assert elapsed >= 24 / 25 * 0.9


def test_rate_limit_also_paces_retries(srv: FakeHttpServer) -> None:
    srv.inject("c0", status=500, times=3)
    obs, _ = run(
        json_source(srv, rate_limit=10, retries=3, backoff=0, backoff_jitter=0), [companies(1)[0]]
    )
    stamps = [r.time for r in srv.requests_for("c0")]
    assert obs["c0"].value == 1000 and len(stamps) == 4
    assert min(b - a for a, b in itertools.pairwise(stamps)) >= 0.07  # scheduling slack
    assert stamps[-1] - stamps[0] >= 0.27


# -- secrets ---------------------------------------------------------------------------------


def test_secret_never_appears_in_reasons_or_logs(
    srv: FakeHttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"TOKEN": SECRET, "QKEY": SECRET + "-q"}
    srv.inject("c0", status=401)
    srv.inject("c1", status=500)
    srv.inject("c2", delay=1.0)
    srv.inject("c3", truncate=True)
    srv.inject("c4", body=f"<html>bad key {SECRET}</html>".encode(), content_type="text/html")
    srv.inject("c5", status=404)
    srv.inject("c6", drop=True)
    srv.payloads["c7"] = {"data": {"employee_count": f"key {SECRET}"}}
    source = json_source(
        srv,
        env,
        retries=1,
        timeout=[0.5, 0.2],
        header_env={"Authorization": {"env": "TOKEN", "prefix": "Bearer "}},
        params_env={"api_key": "QKEY"},
    )
    _, fails = run(source, companies(8))
    assert len(fails) == 8
    forms = {SECRET, quote(SECRET, safe=""), SECRET.replace("+", "%2B")}
    for failure in fails.values():
        assert not any(form in failure.reason for form in forms), failure.reason
    assert "***" in fails["c0"].reason  # the query-string key was masked, not dropped
    for record in caplog.records:
        assert not any(form in record.getMessage() for form in forms), record.getMessage()


def test_any_logger_and_any_traceback_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = "tok_" + "Vb8" * 12
    REDACTOR.add(secret)
    caplog.set_level(logging.DEBUG)
    other = logging.getLogger("somelibrary.child")  # no filter was ever attached to it
    other.debug("GET /x?key=%s", quote(secret, safe=""))
    try:
        raise RuntimeError(f"provider said: invalid key {secret}")
    except RuntimeError:
        other.exception("fetch failed")
    assert "Traceback" in caplog.text and "invalid key ***" in caplog.text
    assert secret[:8] not in caplog.text and quote(secret)[:8] not in caplog.text


@pytest.mark.parametrize(
    "written",
    [
        lambda s: s,
        lambda s: quote(s, safe=""),
        lambda s: quote(s, safe="").lower(),
        lambda s: quote(s),
        lambda s: json.dumps(s)[1:-1],
        lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
        lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
        lambda s: html.escape(s),
    ],
)
def test_every_written_form_of_a_secret_is_redacted(written: Any) -> None:
    secret = "k3y/with+odd&chars=\"é<>" + "x" * 8
    REDACTOR.add(secret)
    assert REDACTOR(f"echo [{written(secret)}] end") == "echo [***] end"


def test_secret_header_does_not_follow_a_redirect_to_another_host(srv: FakeHttpServer) -> None:
    with FakeHttpServer() as other:
        other.add_company("c0", 77)
        target = f"http://localhost:{other.url.rsplit(':', 1)[1]}/api/companies/{{company}}"
        source = build(
            PeopleDataLabsSource, {"PDL_API_KEY": SECRET}, base_url=srv.url, rate_limit=None
        )
        assert source.client.session.secret_headers == {"X-Api-Key"}
        json_src = json_source(
            srv,
            {"TOKEN": SECRET},
            url=srv.url + "/redirect?to=" + quote(target, safe="{}"),
            header_env={"X-Api-Key": "TOKEN"},
            headers={"X-Static": "1"},
        )
        obs, fails = run(json_src, companies(1))
        assert not fails and obs["c0"].value == 77
        assert srv.log[0].headers["X-Api-Key"] == SECRET
        assert "X-Api-Key" not in other.log[0].headers and other.log[0].headers["X-Static"] == "1"


def test_missing_env_var_is_a_config_error_naming_it(srv: FakeHttpServer) -> None:
    with pytest.raises(ConfigError, match="ACME_TOKEN"):
        json_source(srv, {}, header_env={"Authorization": "ACME_TOKEN"})
    with pytest.raises(ConfigError, match="MY_PDL_KEY"):
        build(PeopleDataLabsSource, {}, api_key_env="MY_PDL_KEY")


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ("sk-live-4f9a8b7c6d5e", "header_env.Authorization"),
        ("Bearer abcdef123456", "header_env.Authorization"),
        ({"env": "tok.en/with+chars==", "prefix": "Bearer "}, "header_env.Authorization"),
        ("12345678901234567890", "params_env.api_key"),
    ],
)
def test_a_secret_pasted_instead_of_an_env_var_name_is_not_echoed(
    srv: FakeHttpServer, spec: Any, where: str
) -> None:
    pasted = spec["env"] if isinstance(spec, dict) else spec
    section, key = where.split(".")
    with pytest.raises(ConfigError) as info:
        json_source(srv, {}, **{section: {key: spec}})
    message = str(info.value)
    assert pasted not in message
    assert where in message and "not an environment variable name" in message


# -- html_page -------------------------------------------------------------------------------


def html_source(srv: FakeHttpServer, **raw: Any) -> Any:
    raw.setdefault("url", srv.url + "/pages/{company}")
    return build(HtmlPageSource, **raw)


@pytest.mark.parametrize(
    "where",
    [
        {"selector": "#stats .employees"},
        {"regex": r"([\d,]+) employees"},
        {"selector": "span.employees", "regex": r"([\d,]+)"},
    ],
)
def test_html_selector_and_regex(srv: FakeHttpServer, where: dict[str, str]) -> None:
    srv.add_company("big", 12_345)
    obs, fails = run(html_source(srv, **where), [CompanyRef("big", "Big")])
    assert not fails and obs["big"].value == 12_345


@pytest.mark.parametrize(("text", "value"), [("1.2K people", 1200), ("3M staff", 3_000_000)])
def test_html_suffixes(srv: FakeHttpServer, text: str, value: int) -> None:
    srv.pages["c0"] = f"<html><body><p class='n'>{text}</p></body></html>"
    obs, _ = run(html_source(srv, selector="p.n"), companies(1))
    assert obs["c0"].value == value


def test_html_no_match_and_zero_are_failures(srv: FakeHttpServer) -> None:
    srv.pages["c0"] = "<html><title>Careers</title><p>We are hiring</p></html>"
    srv.pages["c1"] = "<html><span class='employees'>0 employees</span></html>"
    srv.inject("c2", status=404)
    obs, fails = run(html_source(srv, selector=".employees"), companies(4))
    assert set(obs) == {"c3"}
    assert "matched nothing" in fails["c0"].reason and "Careers" in fails["c0"].reason
    assert "must be positive" in fails["c1"].reason and "HTTP 404" in fails["c2"].reason
    _, fails = run(html_source(srv, regex=r"(\d+) engineers"), companies(1))
    assert "did not match" in fails["c0"].reason


# -- pdl -------------------------------------------------------------------------------------


def pdl_source(srv: FakeHttpServer, **raw: Any) -> Any:
    return build(PeopleDataLabsSource, {"PDL_API_KEY": SECRET}, base_url=srv.url, **raw)


def test_pdl_enrich_by_profile_or_website(srv: FakeHttpServer) -> None:
    srv.api_key = SECRET
    refs = [
        CompanyRef("c0", "A", {"linkedin": "li/c0", "website": "c0.example"}),
        CompanyRef("c1", "B", {"website": "c1.example"}),
    ]
    obs, fails = run(pdl_source(srv, rate_limit=50, min_likelihood=5), refs)
    assert not fails and obs["c0"].value == 1000 and obs["c1"].value == 1001
    by_company = {r.company: r for r in srv.log}
    assert by_company["c0"].path == "/v5/company/enrich"
    assert (
        by_company["c0"].query["profile"] == ["li/c0"] and "website" not in by_company["c0"].query
    )
    assert by_company["c1"].query["website"] == ["c1.example"]
    assert by_company["c0"].query["min_likelihood"] == ["5"]
    assert by_company["c0"].headers["X-Api-Key"] == SECRET


def test_pdl_failures(srv: FakeHttpServer) -> None:
    srv.api_key = "another-key"
    refs = [CompanyRef("c0", "A", {"website": "c0.example"}), CompanyRef("none", "N", {})]
    _, fails = run(pdl_source(srv, rate_limit=None), refs)
    assert "HTTP 401" in fails["c0"].reason and SECRET not in fails["c0"].reason
    assert "neither external_ids.linkedin nor external_ids.website" in fails["none"].reason
    srv.api_key = None
    srv.payloads["c1"] = {"status": 200, "name": "b", "employee_count": None}
    refs = [
        CompanyRef("c1", "B", {"website": "c1.example"}),
        CompanyRef("zz", "Z", {"website": "unknown.example"}),
    ]
    _, fails = run(pdl_source(srv, rate_limit=None), refs)
    assert "employee_count is null" in fails["c1"].reason and "HTTP 404" in fails["zz"].reason
    assert not any(f.retriable for f in fails.values())


# -- config validation and plumbing ----------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "raw", "key"),
    [
        (HttpJsonSource, {"url": "http://x/{company}", "value_path": "a", "urll": "y"}, "urll"),
        (HttpJsonSource, {"url": "http://x/", "value_path": "a", "retries": "many"}, "retries"),
        (HttpJsonSource, {"url": "http://x/", "value_path": "a", "timeout": [0, 1]}, "timeout"),
        (HttpJsonSource, {"url": "http://x/{company", "value_path": "a"}, "url"),
        (HttpJsonSource, {"url": "http://x/"}, "value_path"),
        (HttpJsonSource, {"url": "http://x/", "value_path": "a", "header_env": {"A": 1}}, "A"),
        (HtmlPageSource, {"url": "http://x/"}, "selector"),
        (HtmlPageSource, {"url": "http://x/", "selector": "div[["}, "selector"),
        (HtmlPageSource, {"url": "http://x/", "regex": "(unclosed"}, "regex"),
        (PeopleDataLabsSource, {"min_likelihood": 11}, "min_likelihood"),
        (PeopleDataLabsSource, {"api_key": "inline-secret"}, "api_key"),
    ],
)
def test_config_errors_name_the_key(cls: type[HttpSource], raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ValidationError) as info:
        cls.Settings.model_validate({"type": cls.name, **raw})
    assert key in str(info.value)


def test_timeout_accepts_one_number() -> None:
    settings = HttpJsonSource.Settings.model_validate(
        {"type": "http_json", "url": "http://x/", "value_path": "a", "timeout": 3}
    )
    assert settings.timeout == (3.0, 3.0)


def test_entry_points_load_these_classes() -> None:
    ours = {"http_json", "html_page", "pdl"}
    found = {ep.name: ep.load() for ep in entry_points(group="tracker.sources") if ep.name in ours}
    assert found["http_json"] is HttpJsonSource and found["html_page"] is HtmlPageSource
    assert found["pdl"] is PeopleDataLabsSource


UNITS = ("employees", "employee", "people", "staff")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (1234, 1234),
        (1200.0, 1200),  # a JSON number written as a float, but whole
        ("1234", 1234),
        (" 1234\n", 1234),
        ("007", 7),
        ("12,345", 12345),
        ("1,234,567", 1_234_567),
        ("12 345", 12345),
        ("12\u00a0345", 12345),
        ("12\u202f345", 12345),
        ("12\u2009345", 12345),
        ("12'345", 12345),
        ("12_345", 12345),
        ("1,234.0", 1234),
        ("1234.00", 1234),
        ("1.0", 1),
        ("1.2K", 1200),
        ("1.2k", 1200),
        ("1.2 K", 1200),
        ("12K", 12000),
        ("3M", 3_000_000),
        ("1.25M", 1_250_000),
        ("1,500K", 1_500_000),
        ("0.4K", 400),
        (2**62, 2**62),
    ],
)
def test_parse_count_accepts_a_whole_count(raw: Any, value: int) -> None:
    assert parse_count(raw, "v") == value


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("12,345 employees", 12345),
        ("12 345 Employees", 12345),
        ("1 employee", 1),
        ("1.2K people", 1200),
        ("3M staff", 3_000_000),
        ("12,345employees", 12345),
        ("  12,345   employees ", 12345),
    ],
)
def test_parse_count_accepts_a_declared_unit(raw: str, value: int) -> None:
    assert parse_count(raw, "v", UNITS) == value


@pytest.mark.parametrize(
    ("raw", "units", "why"),
    [
        ("error 429: rate limited", UNITS, "does not start with a number"),
        ("unavailable until 2023-01-01", UNITS, "does not start with a number"),
        ("2023-01-01", UNITS, "'-01-01' follows the number"),
        ("429 Too Many Requests", UNITS, "'Too Many Requests' follows the number"),
        ("12,5", UNITS, "',5' follows the number"),
        ("12,5 employees", UNITS, "',5 employees' follows the number"),
        ("about 500", UNITS, "does not start with a number"),
        ("~500", UNITS, "does not start with a number"),
        ("+500", UNITS, "does not start with a number"),
        ("500+", UNITS, "a lower bound"),
        ("10,001+ employees", UNITS, "a lower bound"),
        ("1.2K+", UNITS, "a lower bound"),
        ("1.234", UNITS, "ambiguous"),
        ("12.000", UNITS, "ambiguous"),
        ("12.500 employees", UNITS, "ambiguous"),
        ("1.5", UNITS, "not a whole number"),
        ("1234.6", UNITS, "not a whole number"),
        ("1,234.6", UNITS, "not a whole number"),
        ("1.2345K", UNITS, "not a whole number"),
        ("1,23,456", UNITS, "',23,456' follows the number"),
        ("1,2345", UNITS, "',2345' follows the number"),
        ("1,234 567", UNITS, "'567' follows the number"),
        ("1.234.567", UNITS, "ambiguous"),
        ("12  345", UNITS, "'345' follows the number"),
        ("1e3", UNITS, "'e3' follows the number"),
        ("0x10", UNITS, "'x10' follows the number"),
        ("12 employees 14 contractors", UNITS, "'employees 14 contractors' follows the number"),
        ("12,345 employees", (), "'employees' follows the number"),
        ("12,345 employees", ("people",), "not one of the declared units (people)"),
        ("12,345 employees.", UNITS, "'employees.' follows the number"),
        ("Employees: 12,345", UNITS, "does not start with a number"),
        ("500 employees (approx.)", UNITS, "follows the number"),
        ("3Mstaff", UNITS, "'Mstaff' follows the number"),
        ("1.2KB", UNITS, "'KB' follows the number"),
        ("", UNITS, "empty"),
        ("   ", UNITS, "empty"),
        ("n/a", UNITS, "does not start with a number"),
        ("NaN", UNITS, "does not start with a number"),
        ("9" * 30, UNITS, "too large"),
        ("0", UNITS, "must be positive"),
        ("0 employees", UNITS, "must be positive"),
        ("-12", UNITS, "must be positive"),
        ("\u221212", UNITS, "must be positive"),
    ],
)
def test_parse_count_refuses_anything_but_a_whole_count(
    raw: str, units: tuple[str, ...], why: str
) -> None:
    with pytest.raises(FatalSourceError) as info:
        parse_count(raw, "employee_count", units)
    message = str(info.value)
    assert why in message, message
    assert message.startswith("employee_count ")
    if raw.strip() and "must be positive" not in why:
        assert repr(" ".join(raw.split())) in message  # the value itself is quoted


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (None, "is null"),
        (True, "boolean"),
        (False, "boolean"),
        (0, "must be positive"),
        (-12, "must be positive"),
        (0.0, "must be positive"),
        (1234.6, "not a whole number"),
        (0.5, "not a whole number"),
        (float("nan"), "not a count"),
        (float("inf"), "not a count"),
        (1e300, "too large"),
        (2**62 + 1, "too large"),
        ({"a": 1}, "dict"),
        ([1200], "list"),
    ],
)
def test_parse_count_refuses_json_values_that_are_not_counts(raw: Any, why: str) -> None:
    with pytest.raises(FatalSourceError, match=why):
        parse_count(raw, "v")


def test_parse_count_quotes_a_long_value_clipped_and_redacted() -> None:
    secret = "pk_" + "Q7w" * 20
    REDACTOR.add(secret)
    with pytest.raises(FatalSourceError) as info:
        parse_count(f"invalid key {secret} for account 42 " + "x" * 500, "v")
    message = str(info.value)
    assert "***" in message and len(message) < 200
    assert not any(secret[i : i + 8] in message for i in range(len(secret) - 7))


def test_lookup_list_index_errors() -> None:
    with pytest.raises(FatalSourceError, match="not an index"):
        lookup({"items": []}, "items.0.count")
    assert lookup({"a/b": {"~": 3}}, "/a~1b/~0") == 3


def test_exported_fixture_serves_and_records(fake_http: FakeHttpServer) -> None:  # noqa: F811
    fake_http.add_company("solo", 42)
    obs, _ = run(json_source(fake_http), [CompanyRef("solo", "Solo")])
    assert obs["solo"].value == 42 and fake_http.requests_for("solo")


# -- end to end: an error string is never a count --------------------------------------------


def test_an_error_string_for_a_count_stores_nothing_and_is_reported(
    srv: FakeHttpServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.payloads["c0"] = {"data": {"employee_count": "error 429: rate limited", "as_of": "x"}}
    srv.payloads["c1"] = {"data": {"employee_count": "unavailable until 2023-01-01"}}
    srv.payloads["c2"] = {"data": {"employee_count": "12,5"}}
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "t.db"}"\n\n'
        f'[sources.api]\ntype = "http_json"\nretries = 0\n'
        f'url = "{srv.url}/api/companies/{{company}}"\nvalue_path = "data.employee_count"\n'
        + "".join(f'[companies.c{i}]\nname = "C{i}"\n' for i in range(4)),
        encoding="utf-8",
    )
    assert main(["--config", str(cfg), "collect", "--day", "2022-10-12"]) == 0  # partial
    assert "1 observations (1 new), 3 failed" in capsys.readouterr().out
    assert main(["--config", str(cfg), "export", "--format", "json"]) == 0
    stored = json.loads(capsys.readouterr().out)
    assert [(r["company"], r["value"]) for r in stored] == [("c3", 1003)]
    ws = open_workspace(cfg)
    try:
        with ws.store.reading() as conn:
            row = conn.execute(select(run_sources)).one()
    finally:
        ws.close()
    assert (row.ok, row.failed) == (1, 3)
    reasons = {f["company"]: f["reason"] for f in row.failures}
    for company, value in (
        ("c0", "error 429: rate limited"),
        ("c1", "unavailable until 2023-01-01"),
        ("c2", "12,5"),
    ):
        assert f"{value!r} is not a count" in reasons[company], reasons[company]
    assert not any(f["retriable"] for f in row.failures)
