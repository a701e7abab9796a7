"""Company names in every script, through the real CLI: imported, identified, given back.

A file naming ``株式会社テスト`` used to be refused whole ("no company id can be made").
These tests import real CSV and JSON Lines files of Japanese, Greek, Arabic,
Cyrillic, Hebrew, emoji and mixed names with ``tracker.cli.main`` and check what a
user relies on: every row lands, each name keeps one id (on a second import, in a
second database, in another process), distinct names never share an id, the exact
name comes back from ``tracker companies`` and ``tracker export``, and the ids of
names that worked before did not move.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import date
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from helpers import python_env
from sqlalchemy import create_engine, insert

from tracker.cli import main
from tracker.records import CompanyRef, Failure, Observation
from tracker.sources.base import Source
from tracker.sources.registry import GROUP, available_sources
from tracker.store import companies as company_ops
from tracker.store.schema import companies, run_sources

#: One name per script or trap, all distinct companies.
NAMES = [
    "株式会社テスト",              # Japanese: kanji + katakana
    "ソニーグループ株式会社",
    "日本電気",                    # kanji only: pinyin would read as Chinese
    "中国移动",
    "한국전력공사",                # Korean
    "Ελληνικά Πετρέλαια",         # Greek
    "ΟΤΕ",
    "شركة الاتصالات السعودية",     # Arabic
    "أرامكو",
    "Яндекс",                      # Cyrillic
    "Газпром",
    "אל על",                       # Hebrew: transliterates to "'l 'l" ...
    "על אל",                       # ... and so does this different name
    "ไทยเบฟ",                      # Thai
    "🍎🍏",                        # emoji only
    "🚀",
    "Sony ソニー",                 # mixed: Latin + katakana
    "Tesla Москва",                # mixed: Latin + Cyrillic
    "東京 2",                      # digits only survive an ASCII fold ...
    "大阪 2",                      # ... so both used to become id '2'
    "!!!",                         # punctuation only
    "Apple Inc.",                  # plain Latin, beside them
    "Nestlé",
]

#: Names that worked before this change, with the ids existing databases hold.
LATIN_IDS = [
    ("Apple Inc.", "apple-inc"),
    ("Apple, Inc", "apple-inc"),
    ("APPLE INC", "apple-inc"),
    ("Nestlé", "nestle"),
    ("Nestle\u0301", "nestle"),  # decomposed é
    ("Nestlé S.A.", "nestle-s-a"),
    ("  AT&T ", "at-t"),
    ("Amazon.com, Inc.", "amazon-com-inc"),
    ("Société Générale", "societe-generale"),
    ("Straße AG", "strae-ag"),
    ("Ørsted", "rsted"),
    ("Łódź Sp. z o.o.", "odz-sp-z-o-o"),
    ("Hawaiʻi Airlines", "hawaii-airlines"),
    ("ＡＢＣ Holdings", "abc-holdings"),
    ("Ⅻ Corp", "xii-corp"),
    ("Apple™", "appletm"),
    ("Apple 🍎", "apple"),
    ("Binance", "binance"),
    ("3M", "3m"),
    ("=HYPERLINK(\"http://x\")", "hyperlink-http-x"),
]

#: Pinned ids: the same on every machine and Python (sha256, never hash()).
PINNED = {
    "株式会社テスト": "zhushihuishetesuto_d46fbbrd",
    "Ελληνικά Πετρέλαια": "ellinika-petrelaia_lzqzlhcn",
    "Яндекс": "yandeks_iacm6wki",
    "אל על": "l-l_xrmr6ofn",
    "🚀": "rocket_5o6awkdq",
    "!!!": "_5bgfhdt7",
}


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``run(db, *args) -> (exit code, stdout, stderr)`` through ``tracker.cli.main``."""
    monkeypatch.chdir(tmp_path)

    def invoke(db: str, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--db", db, *args])
        out = capsys.readouterr()
        assert "Traceback" not in out.err + out.out, out.err
        return code, out.out, out.err

    return invoke


def write_csv(path: Path, names: list[str], days: tuple[str, ...] = ("2022-10-10",
                                                                     "2022-10-11")) -> Path:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["company", "date", "count"])
    for i, name in enumerate(names):
        for j, day in enumerate(days):
            writer.writerow([name, day, 1000 + 10 * i + j])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def write_jsonl(path: Path, names: list[str]) -> Path:
    lines = [json.dumps({"display_name": n,
                         "employee_count_by_month": {"2022-09": 500 + i, "2022-10": 600 + i}},
                        ensure_ascii=False) for i, n in enumerate(names)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def listed(run, db: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """name -> id from ``tracker companies --format json``."""
    code, out, _ = run(db, "companies", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    return {r["name"]: r["id"] for r in rows}


def test_every_script_imports_with_stable_distinct_ids(run, db_url: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                       sqlite_url: str) -> None:
    path = write_csv(tmp_path / "names.csv", NAMES)
    code, out, err = run(db_url, "import", str(path))
    assert code == 0, err
    assert f"{2 * len(NAMES):,} new" in out

    ids = listed(run, db_url)
    assert set(ids) == set(NAMES)  # every name, exactly as written
    assert len(set(ids.values())) == len(NAMES)  # distinct names, distinct ids
    for name, cid in PINNED.items():
        assert ids[name] == cid
    assert ids["Apple Inc."] == "apple-inc" and ids["Nestlé"] == "nestle"
    assert all(len(cid) <= 200 and cid.isascii() for cid in ids.values())

    code, out, _ = run(db_url, "import", str(path))  # the same file again
    assert code == 0 and f"0 new, {2 * len(NAMES):,} unchanged" in out
    assert listed(run, db_url) == ids

    second = f"sqlite:///{tmp_path / 'second.db'}"  # another database, names reordered
    other = write_csv(tmp_path / "reversed.csv", NAMES[::-1])
    assert run(second, "import", str(other))[0] == 0
    assert listed(run, second) == ids

    code, out, _ = run(db_url, "export", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 2 * len(NAMES)
    assert list(rows[0]) == ["company", "metric", "source", "as_of", "value", "collected_at",
                             "company_name"]
    assert {r["company_name"]: r["company"] for r in rows} == ids


def test_export_csv_carries_the_name_beside_the_id(run, sqlite_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv(tmp_path / "names.csv", NAMES)
    assert run(sqlite_url, "import", str(path))[0] == 0
    out_path = tmp_path / "export.csv"
    assert run(sqlite_url, "export", "-o", str(out_path))[0] == 0
    with out_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    assert header == ["company", "metric", "source", "as_of", "value", "collected_at",
                      "company_name"]
    names = {r[-1] for r in rows}
    # a CSV writer may prefix a formula-looking cell; every other name is exact
    assert {n for n in NAMES if n[0] not in "=+-@"} <= names
    assert len(rows) == 2 * len(NAMES)


def test_the_original_name_finds_the_company(run, sqlite_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv(tmp_path / "names.csv", NAMES)
    assert run(sqlite_url, "import", str(path))[0] == 0
    ids = listed(run, sqlite_url)
    for name in NAMES:
        code, out, err = run(sqlite_url, "show", name, "--format", "json")
        assert code == 0, (name, err)
        assert [r["value"] for r in json.loads(out)] == [
            1000 + 10 * NAMES.index(name), 1001 + 10 * NAMES.index(name)]
        assert run(sqlite_url, "show", ids[name], "--format", "json")[1] == out
    # other spellings of the same name: decomposed, half-width, other case
    for variant, name in (("ｿﾆｰｸﾞﾙｰﾌﾟ株式会社", "ソニーグループ株式会社"),
                          (unicodedata.normalize("NFD", "Ελληνικά Πετρέλαια"),
                           "Ελληνικά Πετρέλαια"),
                          ("ΕΛΛΗΝΙΚΆ ΠΕΤΡΈΛΑΙΑ", "Ελληνικά Πετρέλαια"),
                          ("яндекс", "Яндекс")):
        code, out, err = run(sqlite_url, "show", variant, "--format", "json")
        assert code == 0, (variant, err)
        code, exported, _ = run(sqlite_url, "export", "--company", variant, "--format", "json")
        assert code == 0
        assert {r["company_name"] for r in json.loads(exported)} == {name}
    code, _, err = run(sqlite_url, "show", "株式会社テスト2")
    assert code == 3 and "unknown company '株式会社テスト2'" in err


def test_plot_takes_the_original_name(run, sqlite_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_csv(tmp_path / "names.csv", ["株式会社テスト"])
    assert run(sqlite_url, "import", str(path))[0] == 0
    code, out, err = run(sqlite_url, "plot", "株式会社テスト")
    assert code == 0, err
    assert Path(out.strip()).stat().st_size > 0


def test_jsonl_names_get_the_same_ids_as_csv(run, sqlite_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(sqlite_url, "import", str(write_jsonl(tmp_path / "names.jsonl", NAMES)))
    assert code == 0, err
    assert f"{2 * len(NAMES):,} new" in out
    from_json = listed(run, sqlite_url)
    other = f"sqlite:///{tmp_path / 'csv.db'}"
    assert run(other, "import", str(write_csv(tmp_path / "names.csv", NAMES)))[0] == 0
    assert from_json == listed(run, other)


@pytest.mark.parametrize("blank", ["   ", "\u3000", "\u200b", "\u200b \u2060", "\t"])
def test_a_name_with_nothing_visible_is_a_bad_row(run, sqlite_url: str, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   blank: str) -> None:
    path = tmp_path / "blank.csv"
    path.write_text(f"company,date,count\nЯндекс,2022-10-10,5\n\"{blank}\",2022-10-10,6\n",
                    encoding="utf-8")
    code, _, err = run(sqlite_url, "import", str(path))
    assert code == 3
    assert f"{path}:3: column 'company': empty company name" in err
    assert listed(run, sqlite_url) == {}  # nothing written, not even the good row


def test_aliases_in_other_scripts_resolve(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "config.toml").write_text(
        '[companies.sony]\nname = "ソニーグループ株式会社"\naliases = ["ソニー", "Σόνι"]\n',
        encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'alias.db'}"
    path = write_csv(tmp_path / "aliases.csv", ["ソニー", "ΣΌΝΙ", "ｿﾆｰｸﾞﾙｰﾌﾟ株式会社"],
                     days=("2022-10-10",))
    # three spellings of one company on one day: a conflict, named as such
    code, _, err = run(db, "import", str(path))
    assert code == 3 and "company 'sony'" in err
    for day, name in (("2022-10-11", "ソニー"), ("2022-10-12", "ΣΌΝΙ"),
                      ("2022-10-13", "ｿﾆｰｸﾞﾙｰﾌﾟ株式会社")):
        assert run(db, "import", str(write_csv(tmp_path / f"{day}.csv", [name],
                                               days=(day,))))[0] == 0
    assert listed(run, db) == {"ソニーグループ株式会社": "sony"}
    code, out, _ = run(db, "show", "Σόνι", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 3


def test_existing_databases_keep_their_ids(run, sqlite_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A mixed-script name stored under the old rule's id keeps that id.

    Before, 'Sony ソニー' and '東京 2' became 'sony' and '2' (the ASCII fold dropped
    the rest). Such a database must go on filing new rows under those ids.
    """
    assert run(sqlite_url, "db", "upgrade")[0] == 0  # creates and migrates the database
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(insert(companies), [
            {"id": "sony", "name": "Sony ソニー", "tags": {}, "external_ids": {},
             "created_at": company_ops.now_utc()},
            {"id": "2", "name": "東京 2", "tags": {}, "external_ids": {},
             "created_at": company_ops.now_utc()},
        ])
    engine.dispose()
    path = write_csv(tmp_path / "old.csv", ["Sony ソニー", "東京 2", "大阪 2"])
    assert run(sqlite_url, "import", str(path))[0] == 0
    ids = listed(run, sqlite_url)
    assert ids["Sony ソニー"] == "sony" and ids["東京 2"] == "2"
    assert ids["大阪 2"] not in {"sony", "2"}
    code, out, _ = run(sqlite_url, "show", "Sony ソニー", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 2


@pytest.mark.parametrize(("name", "cid"), LATIN_IDS)
def test_ids_of_latin_names_are_unchanged(name: str, cid: str) -> None:
    assert company_ops.slugify(name) == cid


def test_ids_are_the_same_in_another_process() -> None:
    """No Python hash(): a child with another hash seed computes the same ids."""
    code = ("import json, sys\nfrom tracker.store.companies import slugify\n"
            "print(json.dumps([slugify(n) for n in json.loads(sys.stdin.read())]))")
    ids = []
    for seed in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(NAMES),
                              capture_output=True, text=True, check=True,
                              env={**python_env(), "PYTHONHASHSEED": seed})
        ids.append(json.loads(proc.stdout))
    assert ids[0] == ids[1] == [company_ops.slugify(n) for n in NAMES]


class WorldSource(Source):
    """A plugin whose provider names companies in their own scripts, and once in blank."""

    name = "world"

    def fetch(self, companies: Sequence[CompanyRef], day: date) -> Iterable[Observation | Failure]:
        for i, name in enumerate([*NAMES[:6], "\u200b"]):
            yield Observation(name, day, 100 + i, source=self.instance)


def test_a_source_collects_names_in_every_script(run, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(available_sources(), "world", EntryPoint(
        name="world", value=f"{__name__}:WorldSource", group=GROUP))
    (tmp_path / "config.toml").write_text('[sources.world]\ntype = "world"\n')
    db = f"sqlite:///{tmp_path / 'collect.db'}"
    code, out, err = run(db, "collect", "--day", "2022-10-10")
    assert code == 0, err
    assert "world: partial, 6 observations (6 new), 1 failed" in out
    assert listed(run, db) == {n: company_ops.slugify(n) for n in NAMES[:6]}
    engine = create_engine(db)
    with engine.connect() as conn:
        failures = conn.execute(run_sources.select()).one().failures
    engine.dispose()
    assert [(f["company"], f["reason"]) for f in failures] == [("\u200b", "empty company name")]


def test_an_export_imports_back_with_its_ids_and_names(tmp_path: Path, capsys) -> None:
    """tracker's own export (company = id, company_name beside it) imports into a new
    database under the same ids and the same display names, in any script; a name
    set by config or an earlier import is not overwritten."""
    src = tmp_path / "in.csv"
    src.write_text("company,date,count\n株式会社テスト,2024-01-01,10\nBinance,2024-01-01,7\n"
                   "Ελληνική Εταιρεία,2024-01-01,5\n", encoding="utf-8")
    first, second = (f"sqlite:///{tmp_path / n}" for n in ("a.db", "b.db"))
    assert main(["--db", first, "import", str(src)]) == 0
    out = tmp_path / "export.csv"
    assert main(["--db", first, "export", "-o", str(out)]) == 0
    assert main(["--db", second, "import", str(out)]) == 0
    capsys.readouterr()

    def listing(db: str) -> dict[str, str]:
        assert main(["--db", db, "companies", "--format", "json"]) == 0
        return {r["id"]: r["name"] for r in json.loads(capsys.readouterr().out)}

    before = listing(first)
    assert set(before.values()) == {"株式会社テスト", "Binance", "Ελληνική Εταιρεία"}
    assert listing(second) == before
    # a name already given stays: import the export with another name beside the id
    renamed = out.read_text(encoding="utf-8").replace(",Binance\n", ",Binance Holdings\n")
    (tmp_path / "renamed.csv").write_text(renamed, encoding="utf-8")
    assert main(["--db", second, "import", str(tmp_path / "renamed.csv")]) == 0
    capsys.readouterr()
    assert listing(second)["binance"] == "Binance"


def test_slug_shaped_names_are_their_own_id_and_alias_key() -> None:
    """resolve() skips the Unicode folding for names already shaped like an id; that
    shortcut is right only if the rules give such a name back unchanged."""
    import random
    import string

    from tracker.store.companies import _SLUG_SHAPED, alias_key, slugify

    rng = random.Random(1)
    checked = 0
    for _ in range(20_000):
        x = "".join(rng.choice(string.ascii_letters + string.digits + "-_ .")
                    for _ in range(rng.randint(1, 12)))
        if _SLUG_SHAPED.fullmatch(x):
            checked += 1
            assert slugify(x) == x and alias_key(x) == x, x
    assert checked > 100
