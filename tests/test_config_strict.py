"""Issue 8.6: config values of the wrong type are errors, never guesses.

TOML types its values, so nothing is coerced: ``daily_at = 7`` once became 00:00:07
and the scheduler ran at seven seconds past midnight. Every settings key (the
top-level sections, ``[detect]``, each company table and every built-in source's
and notifier's table) is fed at least one value of a wrong type through
``load_settings`` of a real config.toml, and the one error it gives must name the
file, the key path, what was given and the expected form. A completeness test
keeps the table in step with the models, so a new key cannot skip this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path

import pytest
from pydantic import BaseModel

from tracker.cli import main
from tracker.config import CompanySettings, Settings, load_settings
from tracker.errors import ConfigError
from tracker.notify.base import available_notifiers, load_notifier_class
from tracker.sources.registry import load_source_class, plugins

ROOT = Path(__file__).resolve().parent.parent

# the expected forms, as the messages spell them
INTEGER = "a whole number"
NUMBER = "a number"
BOOLEAN = "true or false"
STRING = "text in quotes"
ARRAY = "an array"
TABLE = "a table"
CLOCK = '"HH:MM"'
DAY = '"YYYY-MM-DD"'
SECONDS = "[connect, read]"
FINITE = "finite"
CHOICE = "Input should be"  # a Literal lists its choices itself

#: The smallest valid table of each plugin type, so one wrong key is the only problem.
SOURCE_BASE = {
    "csv_folder": 'path = "data"',
    "http_json": 'url = "https://example.org/{company}"\nvalue_path = "count"',
    "html_page": 'url = "https://example.org/{company}"\nselector = "span.count"',
    "pdl": "",
}
NOTIFIER_BASE = {
    "webhook": 'url_env = "HOOK_URL"',
    "alertmanager": 'url_env = "AM_URL"',
    "email": 'host = "smtp.example.org"\nsender = "tracker@example.org"\n'
             'to = ["oncall@example.org"]',
}


@dataclass(frozen=True)
class Case:
    """One wrong value: ``key = value`` in ``[table]`` must fail naming ``path``."""

    table: str  # "" for a top-level key
    key: str
    value: str  # TOML source text of the value
    expect: str  # a fragment of the expected form
    base: str = ""  # other lines the table needs to be valid
    path: str = ""  # the key path in the message when not table.key

    @property
    def where(self) -> str:
        return self.path or (f"{self.table}.{self.key}" if self.table else self.key)

    def toml(self) -> str:
        if not self.table:
            return f"{self.key} = {self.value}\n"
        others = [line for line in self.base.splitlines()
                  if line.split("=")[0].strip() != self.key]
        return "\n".join([f"[{self.table}]", *others, f"{self.key} = {self.value}", ""])

    def __str__(self) -> str:
        return f"{self.where}={self.value}"


def _sections() -> list[Case]:
    return [
        # top-level tables
        *[Case("", name, v, TABLE) for name, v in [
            ("database", '"sqlite:///x.db"'), ("schedule", '"06:00"'), ("run", "1"),
            ("sources", '"samples"'), ("detect", "true"), ("alerts", "[]"),
            ("notify", '"slack"'), ("report", "false"), ("companies", '["apple"]'),
            ("population", "true"), ("cohorts", '["big"]')]],
        Case("cohorts", "big", '["apple"]', TABLE),
        Case("cohorts.big", "companies", '"apple"', ARRAY),
        Case("cohorts.big", "companies", "[1]", STRING, path="cohorts.big.companies.0"),
        Case("sources", "samples", '"csv_folder"', TABLE),
        Case("notify", "slack", "1", TABLE),
        Case("companies", "apple", '"Apple"', TABLE),
        # [database]
        Case("database", "url", "5", STRING),
        Case("database", "url", "true", STRING),
        # [schedule]
        Case("schedule", "daily_at", "7", CLOCK),
        Case("schedule", "daily_at", '"7"', CLOCK),
        Case("schedule", "daily_at", "7.5", CLOCK),
        Case("schedule", "daily_at", '"25:00"', CLOCK),
        Case("schedule", "daily_at", '"06:60"', CLOCK),
        Case("schedule", "daily_at", '"7:30"', CLOCK),
        Case("schedule", "daily_at", '"0630"', CLOCK),
        Case("schedule", "daily_at", '"06:30 pm"', CLOCK),
        Case("schedule", "daily_at", "true", CLOCK),
        Case("schedule", "daily_at", "2022-10-11T06:00:00", CLOCK),
        Case("schedule", "daily_at", "06:30:00.5", CLOCK),
        Case("schedule", "timezone", "1", STRING),
        Case("schedule", "misfire_grace_hours", '"12"', NUMBER),
        Case("schedule", "misfire_grace_hours", "true", NUMBER),
        Case("schedule", "misfire_grace_hours", "nan", FINITE),
        Case("schedule", "on_lock", "true", CHOICE),
        Case("schedule", "lock_wait_seconds", '"3600"', NUMBER),
        Case("schedule", "lock_wait_seconds", "true", NUMBER),
        Case("schedule", "lock_wait_seconds", "inf", FINITE),
        # [run]
        Case("run", "heartbeat_url", "1", STRING),
        Case("run", "stale_days", '"3"', INTEGER),
        Case("run", "stale_days", "3.0", INTEGER),
        Case("run", "stale_days", "true", INTEGER),
        # [alerts]
        Case("alerts", "min_severity", "2", CHOICE),
        Case("alerts", "fresh_days", "7.5", INTEGER),
        Case("alerts", "event_min_companies", '"2"', INTEGER),
        Case("alerts", "inflation_z", '"3.5"', NUMBER),
        Case("alerts", "inflation_min_excess", '"1.5"', NUMBER),
        Case("alerts", "inflation_scale_floor", "true", NUMBER),
        Case("alerts", "inflation_min_peers", "2.5", INTEGER),
        Case("alerts", "inflation_severity", '"loud"', CHOICE),
        Case("alerts", "ratio_jump_pct", '"15"', NUMBER),
        Case("alerts", "ratio_jump_days", '"3"', INTEGER),
        Case("alerts", "ratio_window", "14.0", INTEGER),
        Case("alerts", "corroboration_days", "2.5", INTEGER),
        Case("alerts", "corroboration_z", '"4"', NUMBER),
        # [report]
        Case("report", "enabled", "1", BOOLEAN),
        Case("report", "enabled", '"yes"', BOOLEAN),
        Case("report", "enabled", '"true"', BOOLEAN),
        Case("report", "output_dir", "1", STRING),
        Case("report", "base_url", "1", STRING),
        Case("report", "base_url", "true", STRING),
        Case("report", "base_url", '["https://reports.example.org/"]', STRING),
        Case("report", "base_url", '"reports.example.org"', "http:// or https://"),
        # [companies.ID]
        Case("companies.apple", "name", "1", STRING),
        Case("companies.apple", "aliases", '"apple inc"', ARRAY),
        Case("companies.apple", "aliases", "[1]", STRING, path="companies.apple.aliases.0"),
        Case("companies.apple", "tags", '"software"', TABLE),
        Case("companies.apple", "tags", "{industry = 1}", STRING,
             path="companies.apple.tags.industry"),
        Case("companies.apple", "external_ids", '"apple.com"', TABLE),
        Case("companies.apple", "reference_count", '"164000"', INTEGER),
        Case("companies.apple", "reference_count", "164000.0", INTEGER),
        Case("companies.apple", "reference_date", "20221011", DAY),
        Case("companies.apple", "reference_date", '"2022-10-11T00:00:00"', DAY),
        Case("companies.apple", "reference_date", '"20221011"', DAY),
        Case("companies.apple", "reference_date", '"11/10/2022"', DAY),
        Case("companies.apple", "reference_date", "2022-10-11T00:00:00", DAY),
        Case("companies.apple", "reference_date", "true", DAY),
        Case("companies.apple", "reference_source", "10", STRING),
    ]


def _detect() -> list[Case]:
    """Every [detect] key: integers refuse floats and strings, numbers refuse strings."""
    from tracker.detect.settings import DetectSettings

    cases = []
    for key, field in DetectSettings.model_fields.items():
        if field.annotation is int or field.annotation == "int":
            cases += [Case("detect", key, "30.0", INTEGER), Case("detect", key, "true", INTEGER)]
        elif field.annotation is float or field.annotation == "float":
            cases += [Case("detect", key, '"1.5"', NUMBER), Case("detect", key, "false", NUMBER)]
        else:  # a choice
            cases += [Case("detect", key, "1", CHOICE)]
    return cases


def _source_cases() -> list[Case]:
    shared = [("type", "1", '"csv_folder", "html_page"'), ("enabled", "1", BOOLEAN),
              ("enabled", '"no"', BOOLEAN),
              ("metric", "1", STRING), ("companies", '"apple"', ARRAY)]
    http = [("timeout", '"10"', SECONDS), ("timeout", "true", SECONDS),
            ("timeout", "{connect = 5}", SECONDS),
            ("retries", '"3"', INTEGER), ("retries", "2.0", INTEGER), ("retries", "true", INTEGER),
            ("backoff", '"0.5"', NUMBER), ("backoff", "true", NUMBER),
            ("backoff_max", '"30"', NUMBER), ("backoff_jitter", "false", NUMBER),
            ("retry_after_max", '"60"', NUMBER), ("rate_limit", '"2"', NUMBER),
            ("rate_limit", "true", NUMBER), ("burst", "1.5", INTEGER),
            ("workers", '"4"', INTEGER), ("max_bytes", "5e6", INTEGER),
            ("verify", '"false"', BOOLEAN), ("verify", "0", BOOLEAN),
            ("user_agent", "1", STRING), ("headers", '"X-A: 1"', TABLE),
            ("header_env", '"TOKEN"', TABLE), ("params", "[]", TABLE),
            ("params_env", "1", TABLE), ("units", '"employees"', ARRAY)]
    specific = {
        "csv_folder": [("path", "1", STRING), ("pattern", "1", STRING),
                       ("recursive", '"yes"', BOOLEAN), ("recursive", "1", BOOLEAN),
                       ("layout", "1", CHOICE), ("company_col", "1", STRING),
                       ("date_col", "1", STRING), ("count_col", "1", STRING),
                       ("source", "1", STRING), ("skip_bad", "1", BOOLEAN)],
        "http_json": [*http, ("url", "1", STRING), ("value_path", "1", STRING),
                      ("date_path", "1", STRING), ("metrics", '"employees:security"', TABLE)],
        "html_page": [*http, ("url", "1", STRING), ("selector", "1", STRING),
                      ("regex", "1", STRING)],
        "pdl": [*http, ("api_key_env", "1", STRING), ("base_url", "1", STRING),
                ("prefer", "1", CHOICE), ("min_likelihood", '"5"', INTEGER),
                ("min_likelihood", "5.0", INTEGER)],
    }
    cases = []
    for kind, rows in specific.items():
        base = f'type = "{kind}"\n{SOURCE_BASE[kind]}'
        for key, value, expect in [*shared, *rows]:
            lines = SOURCE_BASE[kind] if key == "type" else base
            cases.append(Case(f"sources.{kind}_1", key, value, expect, base=lines))
    # list and table items are checked too
    cases += [
        Case("sources.http_json_1", "timeout", '[5, "30"]', NUMBER,
             base=f'type = "http_json"\n{SOURCE_BASE["http_json"]}',
             path="sources.http_json_1.timeout.1"),
        Case("sources.http_json_1", "timeout", "[5, true]", NUMBER,
             base=f'type = "http_json"\n{SOURCE_BASE["http_json"]}',
             path="sources.http_json_1.timeout.1"),
        Case("sources.http_json_1", "header_env", "{Authorization = 5}", STRING,
             base=f'type = "http_json"\n{SOURCE_BASE["http_json"]}',
             path="sources.http_json_1.header_env.Authorization"),
        Case("sources.http_json_1", "header_env", "{Authorization = {env = 5}}", STRING,
             base=f'type = "http_json"\n{SOURCE_BASE["http_json"]}',
             path="sources.http_json_1.header_env.Authorization.env"),
        Case("sources.csv_folder_1", "companies", '["apple", 2]', STRING,
             base=f'type = "csv_folder"\n{SOURCE_BASE["csv_folder"]}',
             path="sources.csv_folder_1.companies.1"),
    ]
    return cases


def _notifier_cases() -> list[Case]:
    shared = [("type", "true", '"email", "webhook"'), ("enabled", "1", BOOLEAN),
              ("min_severity", "1", CHOICE),
              ("companies", '"apple"', ARRAY), ("kinds", '"drop"', ARRAY),
              ("max_alerts", '"10"', INTEGER), ("max_alerts", "true", INTEGER)]
    post = [("url", "1", STRING), ("url_env", "1", STRING), ("timeout", '"5"', SECONDS),
            ("timeout", "false", SECONDS), ("retries", "1.0", INTEGER),
            ("backoff", '"1"', NUMBER), ("backoff_max", "true", NUMBER),
            ("retry_after_max", '"60"', NUMBER), ("verify", "1", BOOLEAN),
            ("headers", "1", TABLE), ("header_env", '"X"', TABLE)]
    specific = {
        "webhook": [*post, ("include_alerts", '"yes"', BOOLEAN)],
        "alertmanager": [*post, ("receiver", "1", STRING), ("alertname", "1", STRING),
                         ("labels", '"team"', TABLE),
                         ("group_by", '"alertname"', ARRAY), ("external_url", "1", STRING),
                         ("bearer_token_env", "1", STRING), ("username", "1", STRING),
                         ("password_env", "1", STRING)],
        "email": [("host", "1", STRING), ("port", '"587"', INTEGER), ("port", "587.0", INTEGER),
                  ("starttls", "0", BOOLEAN), ("ssl", '"false"', BOOLEAN),
                  ("username", "1", STRING), ("password_env", "1", STRING),
                  ("sender", "1", STRING), ("to", '"oncall@example.org"', ARRAY),
                  ("subject_prefix", "1", STRING), ("timeout", '"30"', NUMBER),
                  ("timeout", "true", NUMBER)],
    }
    cases = []
    for kind, rows in specific.items():
        base = f'type = "{kind}"\n{NOTIFIER_BASE[kind]}'
        for key, value, expect in [*shared, *rows]:
            lines = NOTIFIER_BASE[kind] if key == "type" else base
            cases.append(Case(f"notify.{kind}_1", key, value, expect, base=lines))
    cases.append(Case("notify.alertmanager_1", "labels", "{team = 1}", STRING,
                      base=f'type = "alertmanager"\n{NOTIFIER_BASE["alertmanager"]}',
                      path="notify.alertmanager_1.labels.team"))
    cases.append(Case("notify.webhook_1", "kinds", '["purge"]', CHOICE,
                      base=f'type = "webhook"\n{NOTIFIER_BASE["webhook"]}',
                      path="notify.webhook_1.kinds.0"))
    return cases


def _population() -> list[Case]:
    """Every [population] key, as [detect]'s."""
    from tracker.detect.population_settings import PopulationSettings

    cases = []
    for key, field in PopulationSettings.model_fields.items():
        if field.annotation is int or field.annotation == "int":
            cases += [Case("population", key, "30.0", INTEGER)]
        elif field.annotation is float or field.annotation == "float":
            cases += [Case("population", key, '"1.5"', NUMBER)]
        else:
            cases += [Case("population", key, "1", BOOLEAN)]
    return cases


CASES = [*_sections(), *_detect(), *_population(), *_source_cases(), *_notifier_cases()]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_wrong_type_is_one_clear_error(tmp_path: Path, case: Case) -> None:
    path = write(tmp_path, case.toml())
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    problems = info.value.problems
    assert len(problems) == 1, problems  # one problem, one line: no echo from a union
    line = problems[0]
    assert "\n" not in line
    assert line.startswith(f"{path}: '{case.where}': "), line
    assert case.expect in line, line
    assert ", got " in line, line  # what was given


def _model_keys() -> dict[str, set[str]]:
    """Table -> every key its model accepts, found from the models themselves."""
    keys: dict[str, set[str]] = {"": set(Settings.model_fields) - {"base_dir", "config_path"}}
    for section in ("database", "schedule", "run", "detect", "alerts", "report"):
        model = Settings.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        keys[section] = set(model.model_fields)
    keys["companies.apple"] = set(CompanySettings.model_fields)
    keys["population"] = set(Settings.model_fields["population"].annotation.model_fields)  # type: ignore[union-attr]
    keys["cohorts.big"] = {"companies"}
    for info in plugins():
        if info.distribution == "headcount-tracker":
            keys[f"sources.{info.type}_1"] = set(load_source_class(info.type).Settings.model_fields)
    for kind, ep in available_notifiers().items():
        if ep.dist is not None and ep.dist.name == "headcount-tracker":
            keys[f"notify.{kind}_1"] = set(load_notifier_class(kind).Settings.model_fields)
    return keys


def test_every_settings_key_has_a_wrong_type_case() -> None:
    expected = _model_keys()
    assert {"sources.pdl_1", "notify.email_1", "detect"} <= set(expected)
    covered: dict[str, set[str]] = {}
    for case in CASES:
        covered.setdefault(case.table, set()).add(case.key)
    missing = {t: sorted(k - covered.get(t, set())) for t, k in expected.items()
               if k - covered.get(t, set())}
    assert not missing, f"settings keys without a wrong-type case: {missing}"


@pytest.mark.parametrize("value, expected", [
    ('"07:30"', time(7, 30)),
    ('"07:30:15"', time(7, 30, 15)),
    ('"00:00"', time(0, 0)),
    ('"23:59:59"', time(23, 59, 59)),
    ("07:30:00", time(7, 30)),  # a TOML local time
])
def test_daily_at_documented_forms(tmp_path: Path, value: str, expected: time) -> None:
    settings = load_settings(write(tmp_path, f"[schedule]\ndaily_at = {value}\n"))
    assert settings.schedule.daily_at == expected


def test_daily_at_seven_says_the_expected_form(tmp_path: Path) -> None:
    """The reported defect: 7 was read as 00:00:07."""
    path = write(tmp_path, "[schedule]\ndaily_at = 7\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    (line,) = info.value.problems
    assert line == (f"{path}: 'schedule.daily_at': Input should be a valid time: "
                    '"HH:MM" or "HH:MM:SS", 24-hour, e.g. "06:00", got 7 (an integer)')


@pytest.mark.parametrize("value", ['"2022-10-11"', "2022-10-11"])
def test_reference_date_documented_forms(tmp_path: Path, value: str) -> None:
    # a reference date goes with its count (tests/test_reference.py checks the pairing)
    settings = load_settings(write(tmp_path, "[companies.apple]\nreference_count = 164000\n"
                                             f"reference_date = {value}\n"))
    assert settings.companies["apple"].reference_date == date(2022, 10, 11)


@pytest.mark.parametrize("text, check", [
    ("[schedule]\nmisfire_grace_hours = 12\nlock_wait_seconds = 60\n",
     lambda s: s.schedule.misfire_grace_hours == 12.0 and s.schedule.lock_wait_seconds == 60.0),
    ("[detect]\nthreshold = 7\n", lambda s: s.detect.threshold == 7.0),
    ('[sources.api]\ntype = "http_json"\nurl = "https://x.org/{company}"\nvalue_path = "n"\n'
     "timeout = 10\n", lambda s: s.sources["api"]["timeout"] == 10),
])
def test_an_integer_where_a_number_is_expected_is_fine(tmp_path: Path, text: str,
                                                       check: object) -> None:
    settings = load_settings(write(tmp_path, text))
    assert check(settings)  # type: ignore[operator]


@pytest.mark.parametrize("value, expected", [("10", (10.0, 10.0)), ("[5, 30]", (5.0, 30.0)),
                                             ("[2.5, 60]", (2.5, 60.0))])
def test_timeout_forms_reach_the_source(tmp_path: Path, value: str,
                                        expected: tuple[float, float]) -> None:
    """One number sets both timeouts and a TOML array is the (connect, read) pair."""
    from tracker.sources.base import SourceContext

    settings = load_settings(write(tmp_path, '[sources.api]\ntype = "http_json"\n'
                                             'url = "https://x.org/{company}"\n'
                                             f'value_path = "n"\ntimeout = {value}\n'))
    source = load_source_class("http_json").from_config("api", settings.sources["api"],
                                                        SourceContext(tmp_path))
    assert source.settings.timeout == expected  # type: ignore[attr-defined]


def test_the_cli_prints_one_line_per_problem(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[schedule]\ndaily_at = 7\nlock_wait_seconds = "60"\n\n'
                           '[report]\nenabled = "yes"\n\n[companies.apple]\n'
                           'reference_date = 20221011\n')
    code = main(["--config", str(path), "status"])
    out, err = capsys.readouterr()
    assert code == 3
    assert "Traceback" not in out + err
    lines = [line.strip() for line in err.strip().splitlines()]
    assert "4 problem(s)" in lines[0]
    problems = lines[1:]
    assert len(problems) == 4, err
    for key, form in [("schedule.daily_at", CLOCK), ("schedule.lock_wait_seconds", NUMBER),
                      ("report.enabled", BOOLEAN), ("companies.apple.reference_date", DAY)]:
        (line,) = [p for p in problems if f"'{key}'" in p]
        assert line.startswith(str(path)) and form in line and ", got " in line
    assert not (tmp_path / "data").exists()  # nothing was created for a bad config


def test_a_whole_table_problem_names_the_table_and_never_echoes_it(tmp_path: Path) -> None:
    """A rule across keys is about the table; echoing it would show a webhook URL (a secret)."""
    secret = "https://hooks.example.org/services/T0/B0/Zk9mPq2sXw7"
    path = write(tmp_path, f'[notify.w]\ntype = "webhook"\nurl = "{secret}"\n'
                           'url_env = "HOOK_URL"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    (line,) = info.value.problems
    assert line.startswith(f"{path}: 'notify.w': set exactly one of 'url' and 'url_env'"), line
    assert "Value error" not in line
    assert "Zk9mPq" not in str(info.value) and "hooks.example" not in str(info.value)


def _readme_configs() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    return [b for b in blocks if "entry-points" not in b]


def test_shipped_and_documented_configs_still_load(tmp_path: Path) -> None:
    shipped = load_settings(ROOT / "config.toml")
    assert shipped.schedule.daily_at == time(6, 0)
    blocks = _readme_configs()
    assert blocks, "the README's config examples were not found"
    for i, block in enumerate(blocks):
        folder = tmp_path / str(i)
        folder.mkdir()
        load_settings(write(folder, block))


LAX_PLUGIN = """
from pydantic import BaseModel


class LaxSettings(BaseModel):
    # a third-party model that forgot strictness: a plain BaseModel, no base class
    type: str
    every: int = 1
    loud: bool = False


class LaxSource:
    name = "lax"
    Settings = LaxSettings
"""


def test_plugin_tables_get_the_same_strictness(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A really installed plugin whose model is lax on its own is still validated strictly."""
    from tracker.plugins import available

    site = tmp_path / "site"
    info = site / "lax_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "lax_plugin.py").write_text(LAX_PLUGIN, encoding="utf-8")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lax-plugin\nVersion: 1.0\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text("[tracker.sources]\nlax = lax_plugin:LaxSource\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    available.cache_clear()
    try:
        assert "lax" in available("source")
        path = write(tmp_path, '[sources.x]\ntype = "lax"\nevery = "3"\nloud = 1\n')
        with pytest.raises(ConfigError) as raised:
            load_settings(path)
        assert len(raised.value.problems) == 2, raised.value.problems
        text = "\n".join(raised.value.problems)
        assert f"{path}: 'sources.x.every': Input should be a valid integer" in text
        assert f"{path}: 'sources.x.loud': Input should be a valid boolean" in text
        good = load_settings(write(tmp_path, '[sources.x]\ntype = "lax"\nevery = 3\n'))
        assert good.sources["x"]["every"] == 3
    finally:
        available.cache_clear()
