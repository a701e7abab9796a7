"""CSV import: layouts, edge cases, validation, all-or-nothing files, SIGKILL."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert

from tracker.errors import ImportValidationError, InputError
from tracker.ingest import ImportOptions, import_file, write_parsed
from tracker.ingest.csvfile import parse
from tracker.store import Store
from tracker.store import companies as company_ops
from tracker.store.schema import company_aliases

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "samples" / "purge_2022.csv"


def values(store: Store, company: str | None = None) -> dict[tuple[str, str], int]:
    obs = store.observations()
    if company:
        obs = obs[obs["company"] == company]
    return {(r.company, r.as_of.strftime("%Y-%m-%d")): int(r.value) for r in obs.itertuples()}


EDGE_CASES = [
    pytest.param(
        "company,date,count\nApple,2022-10-10,576562\n",
        {("apple", "2022-10-10"): 576562},
        id="plain",
    ),
    pytest.param(
        "\ufeffcompany,date,count\nApple,2022-10-10,5\n", {("apple", "2022-10-10"): 5}, id="bom"
    ),
    pytest.param(
        "company,date,count\r\nApple,2022-10-10,5\r\nAmazon,2022-10-10,6\r\n",
        {("apple", "2022-10-10"): 5, ("amazon", "2022-10-10"): 6},
        id="crlf",
    ),
    pytest.param(
        'company,date,count\n"Apple, Inc.",2022-10-10,"1,234"\n',
        {("apple-inc", "2022-10-10"): 1234},
        id="quoted-and-thousands",
    ),
    pytest.param(
        "company,date,count\nApple,2022-10-10,1 234 567\nAmazon,2022-10-10,1_000\n",
        {("apple", "2022-10-10"): 1234567, ("amazon", "2022-10-10"): 1000},
        id="space-and-underscore-separators",
    ),
    pytest.param(
        "company,date,count\n\nApple,2022-10-10,5\n\n\nAmazon,2022-10-11,6\n\n",
        {("apple", "2022-10-10"): 5, ("amazon", "2022-10-11"): 6},
        id="blank-lines",
    ),
    pytest.param(
        "company,date,count\nApple,2022-10-10,5\ncompany,date,count\nApple,2022-10-11,6\n",
        {("apple", "2022-10-10"): 5, ("apple", "2022-10-11"): 6},
        id="repeated-header",
    ),
    pytest.param(
        "Company Name,As Of Date,Employee Count\nApple,2022-10-10,5\n",
        {("apple", "2022-10-10"): 5},
        id="header-spellings",
    ),
    pytest.param(
        "name,day,headcount\nApple,2022-10-10T00:00:00,5\n",
        {("apple", "2022-10-10"): 5},
        id="timestamp-as-date",
    ),
    pytest.param(
        "company,date,count\nApple,2022-10-10,5\nApple,2022-10-10,5\n",
        {("apple", "2022-10-10"): 5},
        id="identical-duplicates-are-fine",
    ),
    pytest.param(
        "company,date,count\nApple,2022-10-10,5.0\n",
        {("apple", "2022-10-10"): 5},
        id="integral-float",
    ),
    pytest.param(
        "\ufeffcompany,date,count\nApple,2022-10-10,5\n\ufeffcompany,date,count\nApple,2022-10-11,6\n",
        {("apple", "2022-10-10"): 5, ("apple", "2022-10-11"): 6},
        id="concatenated-files-with-boms",
    ),
    # The calendar day is the date as written; a time part and its offset are ignored.
    pytest.param(
        "company,date,count\nApple,2022-01-01T23:00:00-05:00,5\nAmazon,2022-01-01T01:00:00+02:00,6\n",
        {("apple", "2022-01-01"): 5, ("amazon", "2022-01-01"): 6},
        id="mixed-timezone-offsets",
    ),
    pytest.param(
        "company,date,count\nApple,2022-01-01 23:59:59,5\nAmazon,2022-01-02T00:00:00Z,6\n"
        "Binance,2022-01-03T10:00:00.123456+05:30,7\n",
        {("apple", "2022-01-01"): 5, ("amazon", "2022-01-02"): 6, ("binance", "2022-01-03"): 7},
        id="date-times-of-every-shape",
    ),
    pytest.param(
        "company,date,count\nApple,1677-09-22,5\nApple,2262-04-11T10:00:00+01:00,6\n",
        {("apple", "1677-09-22"): 5, ("apple", "2262-04-11"): 6},
        id="first-and-last-supported-days",
    ),
    pytest.param(
        "company,date,count\nA,2022-10-10,1'234\nB,2022-10-10,1\u00a0234\nC,2022-10-10,1\u202f234\n"
        'D,2022-10-10,"1,234,567"\nE,2022-10-10,"1,234.0"\nF,2022-10-10,123\n',
        {("a", "2022-10-10"): 1234, ("b", "2022-10-10"): 1234, ("c", "2022-10-10"): 1234,
         ("d", "2022-10-10"): 1234567, ("e", "2022-10-10"): 1234, ("f", "2022-10-10"): 123},
        id="every-thousands-separator",
    ),
    pytest.param(
        "company,date,count\nA,2022-10-10,4611686018427387904\nB,2022-10-10,4611686018427387903\n",
        {("a", "2022-10-10"): 2**62, ("b", "2022-10-10"): 2**62 - 1},
        id="largest-counts-kept-exactly",
    ),
    pytest.param(
        "date,count,Apple\n2022-10-10,5,6\n",
        {("count", "2022-10-10"): 5, ("apple", "2022-10-10"): 6},
        id="wide-company-called-count",
    ),
    pytest.param(
        "company,date,count\n" + "A" * 200 + ",2022-10-10,5\n",
        {("a" * 200, "2022-10-10"): 5},
        id="company-name-of-200-characters",
    ),
]


@pytest.mark.parametrize(("content", "expected"), EDGE_CASES)
def test_edge_cases(store: Store, write_csv, content: str, expected: dict) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("in.csv", content)
    result = import_file(store, path)
    assert values(store) == expected
    assert result.inserted == len(expected)


def test_gzip(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "in.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("company,date,count\nApple,2022-10-10,5\n")
    import_file(store, path)
    assert values(store) == {("apple", "2022-10-10"): 5}


def test_wide_layout(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv(
        "wide.csv", "date,Apple,Amazon\n2022-10-10,576562,\n2022-10-11,284991,838601\n"
    )
    result = import_file(store, path)
    assert result.layout == "wide"
    assert values(store) == {
        ("apple", "2022-10-10"): 576562,
        ("apple", "2022-10-11"): 284991,
        ("amazon", "2022-10-11"): 838601,
    }


def test_wide_layout_bad_cell_names_line_and_column(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("wide.csv", "date,Apple,Amazon\n2022-10-10,576562,12\n2022-10-11,oops,9\n")
    with pytest.raises(ImportValidationError) as info:
        import_file(store, path)
    assert f"{path}:3: column 'Apple': value 'oops'" in str(info.value)
    assert store.observations().empty


def test_thinknum_layout(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    content = (
        "dataset_id,as_of_date,company_name,followers_count,employees_on_platform,link,"
        "industry,date_added,date_updated\n"
        "1,2022-10-10,Apple,100,576562,https://www.linkedin.com/company/apple,"
        "Consumer Electronics,2018-01-01,2022-10-10\n"
        "1,2022-10-11,Apple,101,284991,https://www.linkedin.com/company/apple,"
        "Consumer Electronics,2018-01-01,2022-10-11\n"
    )
    result = import_file(store, write_csv("tn.csv", content))
    assert result.layout == "thinknum"
    obs = store.observations()
    assert set(obs["metric"]) == {"employees", "followers"}
    assert set(obs["source"]) == {"thinknum"}
    emp = obs[obs["metric"] == "employees"]["value"].tolist()
    assert emp == [576562, 284991]
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT tags, external_ids FROM companies").one()
    assert "Consumer Electronics" in str(row[0])
    assert "linkedin.com/company/apple" in str(row[1])


def test_explicit_columns_metric_and_source(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("x.csv", "org_label,when,n\nApple,2022-10-10,7\n")
    with pytest.raises(InputError, match="no company column"):
        import_file(store, path, ImportOptions(layout="long", date_col="when"))
    options = ImportOptions(
        company_col="org_label",
        date_col="when",
        count_col="n",
        metric="employees:security",
        source="recruiter",
    )
    import_file(store, path, options)
    obs = store.observations()
    assert obs[["metric", "source", "value"]].values.tolist() == [
        ["employees:security", "recruiter", 7]
    ]


def test_missing_named_column_lists_the_columns(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("x.csv", "company,date,count\nApple,2022-10-10,7\n")
    with pytest.raises(InputError, match=r"no column 'nope' for the count \(columns: company"):
        import_file(store, path, ImportOptions(count_col="nope"))


BAD = (
    "company,date,count\n"
    "Apple,2022-10-10,5\n"  # 2 ok
    "Apple,10/11/2022,5\n"  # 3 bad date
    "Amazon,2022-10-10,12a\n"  # 4 not a number
    "Amazon,2022-10-11,-3\n"  # 5 negative
    ",2022-10-11,3\n"  # 6 empty company
    "Binance,2022-09-03,7846\n"  # 7 conflicts with 8
    "Binance,2022-09-03,7800\n"  # 8
    "Binance,2022-09-04,2.5\n"  # 9 not whole
    "Binance,2022-09-05,6102\n"  # 10 ok
)


def test_validation_lists_every_problem_and_writes_nothing(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("bad.csv", BAD)
    with pytest.raises(ImportValidationError) as info:
        import_file(store, path)
    message = str(info.value)
    assert info.value.total == 7
    for fragment in (
        f"{path}:3: column 'date': value '10/11/2022' is not a date",
        f"{path}:4: column 'count': value '12a' is not a whole number",
        f"{path}:5: column 'count': value '-3'",
        f"{path}:6: column 'company': empty company name",
        f"{path}:7: conflicting duplicate rows for 'Binance' on 2022-09-03: "
        "values 7846 (line 7), 7800 (line 8)",
        f"{path}:9: column 'count': value '2.5'",
    ):
        assert fragment in message
    assert "nothing from this file was written" in message
    assert store.observations().empty


LONG_NAME = "x" * 201


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("company,date,count\nApple,10/11/2022,5\n",
         "column 'date': value '10/11/2022' is not a date (expected YYYY-MM-DD)"),
        ("company,date,count\nApple,2022-13-01,5\n", "value '2022-13-01' is not a date"),
        ("company,date,count\nApple,2022-02-30,5\n", "value '2022-02-30' is not a date"),
        ("company,date,count\nApple,someday,5\n", "value 'someday' is not a date"),
        ("company,date,count\nApple,2022-01-01junk,5\n", "value '2022-01-01junk' is not a date"),
        ("company,date,count\nApple,2022-1-1,5\n", "value '2022-1-1' is not a date"),
        ("company,date,count\nApple,0202-10-10,5\n",
         "value '0202-10-10' is outside the supported dates (1677-09-22 to 2262-04-11)"),
        ("company,date,count\nApple,9999-12-31T00:00:00Z,5\n",
         "value '9999-12-31T00:00:00Z' is outside the supported dates"),
        ('company,date,count\nApple,2022-10-10,"12,5"\n',
         "column 'count': value '12,5' is not a whole number >= 0"),
        ('company,date,count\nApple,2022-10-10,"1,2345"\n', "value '1,2345' is not a whole"),
        ('company,date,count\nApple,2022-10-10,"1,23"\n', "value '1,23' is not a whole"),
        ('company,date,count\nApple,2022-10-10,"1,234 567"\n', "value '1,234 567' is not a"),
        ("company,date,count\nApple,2022-10-10,1__000\n", "value '1__000' is not a whole"),
        ("company,date,count\nApple,2022-10-10,1'2'3\n", "value \"1'2'3\" is not a whole"),
        ('company,date,count\nApple,2022-10-10,"1,234.5"\n', "value '1,234.5' is not a whole"),
        ("company,date,count\nApple,2022-10-10,99999999999999999999\n",
         "value '99999999999999999999' is too large for a count"),
        ("company,date,count\nApple,2022-10-10,4611686018427387905\n",
         "value '4611686018427387905' is too large"),
        ('company,date,count\nApple,2022-10-10,"9,223,372,036,854,775,808"\n',
         "is too large"),
        ("company,date,count\nApple,2022-10-10,1e300\n", "value '1e300' is in scientific notation"),
        (f"company,date,count\n{LONG_NAME},2022-10-10,5\n",
         "column 'company': company name longer than 200 characters"),
        (f"company,date,count,metric\nApple,2022-10-10,5,{LONG_NAME}\n",
         "column 'metric': metric name 'xxxxxxxxxxxxxxxxxxxx'... is 201 characters long; use "
         "name[:segment]"),
        (f"company,date,count,source\nApple,2022-10-10,5,{LONG_NAME}\n",
         "column 'source': source name longer than 200 characters"),
        (f"date,{LONG_NAME}\n2022-10-10,5\n", "company name longer than 200 characters"),
        ("company,date,count\n\u200b,2022-10-10,5\n", "column 'company': empty company name"),
        ('company,date,count\n"\u3000 \u2060",2022-10-10,5\n',
         "column 'company': empty company name"),
        ("date,\u200b\n2022-10-10,5\n", "column 'company': empty company name"),
    ],
)
def test_bad_rows_name_line_column_and_reason(
    store: Store, write_csv, content: str, fragment: str
) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("bad.csv", content)
    with pytest.raises(ImportValidationError) as info:
        import_file(store, path)
    assert info.value.total == 1
    assert info.value.problems[0].startswith(f"{path}:2: ")
    assert fragment in info.value.problems[0]
    assert store.observations().empty
    assert store.companies_summary().empty


@pytest.mark.parametrize(
    "count", ["99999999999999999999", "1e400", "inf", "-inf", "nan", "-1", "1.5", "x"]
)
def test_bad_counts_warn_nothing(sqlite_url: str, write_csv, count: str) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("bad.csv", f"company,date,count\nApple,2022-10-10,{count}\nB,2022-10-10,1\n")
    with warnings.catch_warnings(), Store(sqlite_url) as store:
        warnings.simplefilter("error")
        with pytest.raises(ImportValidationError, match=f"value '{count}'"):
            import_file(store, path)


THINKNUM_HEADER = "dataset_id,as_of_date,company_name,followers_count,employees_on_platform\n"


@pytest.mark.parametrize(
    ("content", "options", "error"),
    [
        ("company,date,count\nApple,2022-10-10,5\n", ImportOptions(layout="thinknum"),
         "not a Thinknum file: no column as_of_date, company_name, employees_on_platform "
         "(columns: company, date, count)"),
        ("date,Apple\n2022-10-10,5\n", ImportOptions(layout="thinknum"),
         "not a Thinknum file: no column as_of_date, company_name"),
        ("as_of_date,company_name,followers_count\n2022-10-10,Apple,5\n",
         ImportOptions(layout="thinknum"), "not a Thinknum file: no column employees_on_platform"),
        ("date,Apple,Apple\n2022-10-10,1,2\n", ImportOptions(),
         "column 'Apple' appears more than once in the header"),
        ("date,Apple,Amazon,Apple\n2022-10-10,1,2,3\n", ImportOptions(layout="wide"),
         "column 'Apple' appears more than once in the header"),
        ("company,date,count,count\nApple,2022-10-10,1,2\n", ImportOptions(),
         "column 'count' appears more than once in the header"),
        ("firm,date,count\nApple,2022-10-10,5\n", ImportOptions(),
         "no company column found (looked for company, company_name, name, organization, "
         "organisation, org); name it with --company-col, or use --format wide for one column "
         "per company (column 'firm' holds text, not counts)"),
        ("date,Apple,\n2022-10-10,5,6\n", ImportOptions(),
         "column 3 has values but no name in the header"),
        ("company,date,count\nApple,2022-10-10,5\n", ImportOptions(source="s" * 201),
         "source name longer than 200 characters"),
    ],
)
def test_unusable_layouts(store: Store, write_csv, content: str, options: ImportOptions,
                          error: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as info:
        import_file(store, write_csv("in.csv", content), options)
    assert error in str(info.value)
    assert store.observations().empty


def test_explicit_wide_still_reads_text_columns_as_cells(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("firm.csv", "firm,date,count\nApple,2022-10-10,5\n")
    with pytest.raises(ImportValidationError, match="column 'firm': value 'Apple' is not a whole"):
        import_file(store, path, ImportOptions(layout="wide"))


#: Rows whose names differ but resolve to one company: (file, bad lines, good values).
RESOLVED_CONFLICTS = [
    pytest.param(
        'company,date,count\n"Apple Inc.",2022-10-10,100\n"Apple, Inc",2022-10-10,999\n'
        "Amazon,2022-10-10,5\n",
        [2, 3], {("amazon", "2022-10-10"): 5},
        id="two-spellings",
    ),
    pytest.param(
        'company,date,count\n"Apple Inc.",2022-10-10,100\n"Apple, Inc",2022-10-10,100\n'
        "APPLE INC,2022-10-11,7\n",
        [], {("apple-inc", "2022-10-10"): 100, ("apple-inc", "2022-10-11"): 7},
        id="same-value-is-fine",
    ),
    pytest.param(
        "company,date,count\nApple Inc,2022-10-10,100\nApple Inc,2022-10-10,200\n"
        '"Apple, Inc.",2022-10-10,300\nAmazon,2022-10-10,5\n',
        [2, 3, 4], {("amazon", "2022-10-10"): 5},
        id="joins-an-already-conflicting-group",
    ),
    pytest.param(
        "company,date,count,metric\nApple Inc,2022-10-10,100,employees\n"
        '"Apple, Inc.",2022-10-10,300,followers\n',
        [], {("apple-inc", "2022-10-10"): 300},
        id="different-metrics-do-not-clash",
    ),
    pytest.param(
        "date,Apple Inc,\"Apple, Inc\",Amazon\n2022-10-10,1,2,3\n2022-10-11,4,4,5\n",
        [2, 2], {("amazon", "2022-10-10"): 3, ("apple-inc", "2022-10-11"): 4,
                 ("amazon", "2022-10-11"): 5},
        id="wide",
    ),
]


@pytest.mark.parametrize(("content", "bad_lines", "kept"), RESOLVED_CONFLICTS)
def test_conflicts_are_found_after_company_resolution(
    store: Store, write_csv, content: str, bad_lines: list[int], kept: dict
) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("dup.csv", content)
    if bad_lines:
        with pytest.raises(ImportValidationError) as info:
            import_file(store, path)
        assert info.value.total == len(bad_lines)
        assert all("conflicting duplicate rows for" in p for p in info.value.problems)
        assert store.observations().empty
        assert store.companies_summary().empty
    result = import_file(store, path, ImportOptions(skip_bad=True))
    assert values(store) == kept
    assert result.rejected == len(bad_lines)
    if bad_lines:
        rejects = pd.read_csv(result.rejects_path, dtype=str, keep_default_na=False)
        assert rejects["line"].astype(int).tolist() == bad_lines
        assert rejects["reason"].str.contains("conflicting duplicate rows for company").any()


def test_conflict_message_names_company_and_spellings(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("dup.csv", 'company,date,count\n"Apple Inc.",2022-10-10,100\n'
                                '"Apple, Inc",2022-10-10,999\n')
    with pytest.raises(ImportValidationError) as info:
        import_file(store, path)
    assert info.value.problems[0] == (
        f"{path}:2: conflicting duplicate rows for company 'apple-inc' (written 'Apple Inc.' "
        "and 'Apple, Inc') on 2022-10-10: values 100 (line 2), 999 (line 3)"
    )


def test_an_alias_can_make_names_clash(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    with store.transaction() as conn:
        ids = company_ops.resolve(conn, ["Meta"])
        conn.execute(insert(company_aliases), [{"alias": "facebook", "company_id": ids["Meta"]}])
    path = write_csv("fb.csv", "company,date,count\nMeta,2022-10-10,1\nFacebook,2022-10-10,2\n")
    with pytest.raises(ImportValidationError) as info:
        import_file(store, path)
    assert "company 'meta' (written 'Meta' and 'Facebook')" in str(info.value)


def test_write_parsed_refuses_resolved_conflicts_inside_the_transaction(
    store: Store, write_csv
) -> None:  # type: ignore[no-untyped-def]
    parsed = parse(write_csv("dup.csv", 'company,date,count\n"Apple Inc.",2022-10-10,100\n'
                                        '"Apple, Inc",2022-10-10,999\nAmazon,2022-10-10,5\n'))
    assert parsed.rejects.empty  # the labels differ: parse alone cannot see it
    with (pytest.raises(ImportValidationError, match="conflicting duplicate rows for company"),
          store.transaction() as conn):
        write_parsed(store, conn, parsed)
    assert store.observations().empty
    assert store.companies_summary().empty


def test_only_first_twenty_problems_are_listed(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    rows = "".join(f"Apple,2022-01-{d:02d},x\n" for d in range(1, 31))
    with pytest.raises(ImportValidationError) as info:
        import_file(store, write_csv("many.csv", "company,date,count\n" + rows))
    assert len(info.value.problems) == 20
    assert "... and 10 more" in str(info.value)


def test_skip_bad_writes_good_rows_and_a_rejects_file(
    store: Store, write_csv, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("bad.csv", BAD)
    result = import_file(store, path, ImportOptions(skip_bad=True))
    assert (result.rows, result.rejected, result.inserted) == (2, 7, 2)
    assert values(store) == {("apple", "2022-10-10"): 5, ("binance", "2022-09-05"): 6102}
    rejects = pd.read_csv(result.rejects_path, dtype=str, keep_default_na=False)
    assert result.rejects_path == tmp_path / "bad.rejects.csv"
    assert rejects["line"].tolist() == ["3", "4", "5", "6", "7", "8", "9"]
    assert list(rejects.columns) == ["line", "company", "date", "count", "reason"]
    assert rejects.loc[1, "count"] == "12a"
    assert "not a whole number" in rejects.loc[1, "reason"]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("", "the file is empty"),
        ("company,date,count\n", "no data rows"),
        ("a,b\n1,2\n", "no date column found"),
    ],
)
def test_unusable_files(store: Store, write_csv, content: str, error: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=error):
        import_file(store, write_csv("u.csv", content))


def test_not_utf8_and_missing_file(store: Store, write_csv, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv("latin.csv", "company,date,count\nNestl\xe9,2022-01-01,5\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        import_file(store, path)
    with pytest.raises(InputError, match="no such file"):
        import_file(store, tmp_path / "absent.csv")


def test_sample_import_is_idempotent(store: Store) -> None:
    first = import_file(store, SAMPLE)
    second = import_file(store, SAMPLE)
    assert first.inserted == first.rows > 1000
    assert second.inserted == 0
    assert len(store.observations()) == first.rows


def _big_csv(path: Path, companies: int = 400, days: int = 500) -> int:
    dates = pd.date_range("2020-01-01", periods=days).strftime("%Y-%m-%d")
    frame = pd.DataFrame(
        {
            "company": [f"Company {i}" for i in range(companies)] * days,
            "date": [d for d in dates for _ in range(companies)],
            "count": 1000,
        }
    )
    frame.to_csv(path, index=False)
    return len(frame)


def test_sigkilled_import_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    url = f"sqlite:///{db}"
    csv = tmp_path / "big.csv"
    rows = _big_csv(csv)
    Store(url).close()
    cmd = [sys.executable, "-m", "tracker", "--db", url, "import", str(csv)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wal = Path(str(db) + "-wal")
    start_size = wal.stat().st_size if wal.exists() else 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if wal.exists() and wal.stat().st_size > start_size + 1_000_000:
            break  # it is writing the observations now
        time.sleep(0.005)
    assert proc.poll() is None, "import finished before it could be killed; make the file larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = Store(url)
    assert len(store.observations()) == 0
    assert store.companies_summary().empty
    result = import_file(store, csv)
    assert result.inserted == rows
    assert len(store.observations()) == rows
    store.close()


PDL_RECORDS = [
    {"name": "apple", "display_name": "Apple", "website": "apple.com",
     "linkedin_url": "linkedin.com/company/apple",
     "employee_count_by_month": {"2022-08": 576000, "2022-09": 577500, "2022-10": 290000}},
    {"display_name": "Binance", "employee_count_by_month": {"2022-08": 7846, "2022-09": 6102}},
]


def test_provider_json_monthly_history(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "pdl_companies.json"
    path.write_text(json.dumps({"data": PDL_RECORDS}))
    result = import_file(store, path, ImportOptions(source="pdl"))
    assert (result.layout, result.rows, result.inserted) == ("monthly_json", 5, 5)
    got = values(store)
    assert got[("apple", "2022-10-01")] == 290000
    assert got[("binance", "2022-09-01")] == 6102
    assert set(store.observations()["source"]) == {"pdl"}
    with store.engine.connect() as conn:
        ext = conn.exec_driver_sql("SELECT external_ids FROM companies WHERE id = 'apple'")
        assert "linkedin.com/company/apple" in str(ext.scalar())
    again = import_file(store, path, ImportOptions(source="pdl"))
    assert again.inserted == 0


def test_provider_jsonl_gz_errors_name_the_record(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl.gz"
    lines = [json.dumps(PDL_RECORDS[0]),
             json.dumps({"display_name": "Wingtip", "employee_count_by_month":
                         {"2022-13": 30, "2022-09": "thirty"}})]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    with pytest.raises(ImportValidationError) as info:
        import_file(store, path)
    message = str(info.value)
    assert f"{path}:2: column 'month': value '2022-13-01' is not a date" in message
    assert f"{path}:2: column 'count': value 'thirty' is not a whole number" in message
    assert store.observations().empty
    broken = tmp_path / "broken.json"
    broken.write_text('[{"display_name": "A", ')
    with pytest.raises(InputError, match="not valid JSON"):
        import_file(store, broken)
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps([{"name": "A", "employee_count": 5}]))
    with pytest.raises(InputError, match="no monthly headcounts"):
        import_file(store, flat)


SNAPSHOT_NAMES = [
    ("2022-10-10.csv", datetime(2022, 10, 10, 23, 59, 59, 999999)),
    ("20221010.csv.gz", datetime(2022, 10, 10, 23, 59, 59, 999999)),
    ("snapshot_20221010.csv", datetime(2022, 10, 10, 23, 59, 59, 999999)),
    ("linkedin-2022-10-10.tsv", datetime(2022, 10, 10, 23, 59, 59, 999999)),
    ("2022-10-10T06:00:00Z.csv", datetime(2022, 10, 10, 6)),
    ("2022-10-10T06:00.csv", datetime(2022, 10, 10, 6)),
    ("20221010T060000Z.json", datetime(2022, 10, 10, 6)),
    ("2022-10-10T08:00:00+02:00.jsonl", datetime(2022, 10, 10, 6)),
    ("2022-10-10T08:00:00+0200.csv.xz", datetime(2022, 10, 10, 6)),
    ("2022-10-10T06:00:00.250Z.csv", datetime(2022, 10, 10, 6, 0, 0, 250000)),
    ("2023-01-05.csv", datetime(2023, 1, 5, 12)),  # today: now, not tonight
]


@pytest.mark.parametrize(("name", "stamp"), SNAPSHOT_NAMES, ids=[n for n, _ in SNAPSHOT_NAMES])
def test_snapshot_names_say_when_they_were_collected(name: str, stamp: datetime) -> None:
    from tracker.ingest import snapshot_time

    assert snapshot_time(name, now=datetime(2023, 1, 5, 12)) == stamp


@pytest.mark.parametrize(("name", "reason"), [
    ("2022-10.csv", "does not say when"),
    ("x2022-10-10.csv", "does not say when"),
    ("2022-10-10-final.csv", "does not say when"),
    ("2022-1010.csv", "does not say when"),
    ("2022-10-10T6:00Z.csv", "does not say when"),
    ("2022-13-01.csv", "not a real date"),
    ("2022-10-10T24:00:00Z.csv", "not a real date"),
    ("2023-01-06.csv", "in the future"),
    ("2022-10-10.xlsx", "not a snapshot file"),
    ("2022-10-10", "not a snapshot file"),
])
def test_snapshot_names_that_are_refused(name: str, reason: str) -> None:
    from tracker.ingest import snapshot_time

    with pytest.raises(InputError, match=reason):
        snapshot_time(name, now=datetime(2023, 1, 5, 12))


def test_wide_file_with_a_collected_at_column(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    """The column is each row's time, not a company called collected_at."""
    path = write_csv("wide.csv", "date,Apple,Amazon,collected_at\n"
                                 "2022-10-10,5,7,2022-10-10T06:00:00Z\n"
                                 "2022-10-10,4,7,2022-10-11T06:00:00Z\n")
    result = import_file(store, path)
    assert (result.layout, result.rows, result.inserted) == ("wide", 4, 3)
    obs = store.observations(revisions=True)
    assert sorted(zip(obs["company"], obs["value"], obs["collected_at"], strict=True)) == [
        ("amazon", 7, pd.Timestamp("2022-10-10 06:00")),
        ("apple", 4, pd.Timestamp("2022-10-11 06:00")),
        ("apple", 5, pd.Timestamp("2022-10-10 06:00")),
    ]


def test_one_collected_at_per_row_and_day(store: Store, write_csv) -> None:  # type: ignore[no-untyped-def]
    """Two values for one day at one time still conflict; at two times they are revisions."""
    path = write_csv("a.csv", "company,date,count,collected_at\n"
                              "Apple,2022-10-10,5,2022-10-10T06:00:00Z\n"
                              "Apple,2022-10-10,6,2022-10-10T06:00:00Z\n")
    with pytest.raises(ImportValidationError, match="conflicting duplicate rows"):
        import_file(store, path)
    assert store.observations().empty
