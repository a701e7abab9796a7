"""What a user's file really is, from its bytes: compression, encoding, delimiter.

Names lie: a gzip saved as ``export.csv``, an Excel workbook renamed ``.csv``, a
"CSV" that Excel wrote with semicolons (most of Europe) or as UTF-16 tab-separated
"Unicode text". Reading by extension alone turns each of these into a baffling
error about a missing date column. So every import path asks this module first,
and every fault it finds (a cut-off download, a file that is not UTF-8) becomes one
line that names the file, the line and what to do, instead of a parser's message.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tracker.errors import InputError

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
#: Members that make a ZIP an office document rather than a zipped CSV.
_OFFICE = {"[Content_Types].xml": "an Excel workbook (.xlsx)",
           "mimetype": "a spreadsheet document (.ods)"}
_HEAD_BYTES = 256 * 1024
DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class FileKind:
    """How to read a file: its compression (None: plain) and text encoding."""

    compression: str | None
    encoding: str


def inspect(path: Path) -> FileKind:
    """Compression from the magic bytes (not the name), encoding from the BOM."""
    try:
        with path.open("rb") as fh:
            start = fh.read(8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    compression = next((kind for magic, kind in _MAGIC if start.startswith(magic)), None)
    if compression == "zip":
        _refuse_office(path)
    head = start if compression is None else _head_bytes(path, compression, 8)
    return FileKind(compression, _encoding(head))


#: The first (and last) four bytes of every Parquet file.
PARQUET_MAGIC = b"PAR1"


def is_parquet(path: Path) -> bool:
    """A Parquet file, by its magic bytes (whatever its name), or a folder holding some
    (a dataset, e.g. ``tracker export --format parquet``)."""
    if path.is_dir():
        return bool(parquet_files(path))
    return _starts_with(path, PARQUET_MAGIC)


def parquet_files(folder: Path) -> list[Path]:
    """The data files of a dataset folder, in path order; hidden and ``_`` entries
    (markers, ``_SUCCESS``, temporary files) are left out, as Spark and pyarrow do."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
                  and _starts_with(p, PARQUET_MAGIC))


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False


def _refuse_office(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable ZIP file ({exc})") from exc
    for member, what in _OFFICE.items():
        if member in names:
            raise InputError(
                f"{path}: {what}, not a CSV file; open it and save it as "
                "'CSV UTF-8 (comma delimited)', then import that"
            )


def _encoding(head: bytes) -> str:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig"


def open_bytes(path: Path, compression: str | None) -> IO[bytes]:
    """The file's decompressed bytes as a stream (zstd is left to pandas)."""
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bz2":
        return bz2.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")
    if compression == "zip":
        archive = zipfile.ZipFile(path)
        members = [n for n in archive.namelist() if not n.endswith("/")]
        if len(members) != 1:
            archive.close()
            raise InputError(
                f"{path}: a ZIP file must hold exactly one file to import; it holds "
                f"{len(members)}: {', '.join(members[:5])}; unzip it and import each"
            )
        return archive.open(members[0])
    return path.open("rb")


def _head_bytes(path: Path, compression: str | None, limit: int = _HEAD_BYTES) -> bytes:
    if compression == "zstd":
        return b""
    try:
        with open_bytes(path, compression) as fh:
            return fh.read(limit)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise read_error(path, exc) from exc


def first_line(path: Path, kind: FileKind) -> str:
    """The header line as text (BOM removed), for the delimiter; "" when there is none."""
    head = _head_bytes(path, kind.compression)
    text = head.decode(kind.encoding, errors="replace")
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def delimiter(header: str) -> str:
    """The header's delimiter: a comma unless the header has none and another one.

    A header without commas that splits on ``;``, TAB or ``|`` is such a file (Excel
    in most of Europe writes ``;``, its "Unicode text" TABs); a comma wins whenever it
    is present, so names with semicolons in a comma file never split.
    """
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in DELIMITERS[1:]}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_error(path: Path, exc: BaseException) -> InputError:
    """A decompression or file-system fault as one line saying what it means."""
    text = str(exc)
    if isinstance(exc, EOFError) or "end-of-stream" in text or "ended before" in text:
        return InputError(
            f"{path}: the compressed file is cut off before its end (an interrupted "
            "download or copy?); nothing from it was imported: fetch it again"
        )
    if isinstance(exc, gzip.BadGzipFile | zlib.error):
        return InputError(f"{path}: not a valid gzip file ({text})")
    if isinstance(exc, lzma.LZMAError | zipfile.BadZipFile):
        return InputError(f"{path}: not a valid compressed file ({text})")
    if isinstance(exc, OSError) and exc.strerror:
        return InputError(f"{path}: cannot read: {exc.strerror}")
    return InputError(f"{path}: cannot read: {text}")


def decode_error(path: Path, kind: FileKind, exc: UnicodeDecodeError) -> InputError:
    """Where the first byte that is not UTF-8 sits (file line and column), read afresh.

    The decoder's own offset counts from a buffer somewhere in the file, so the
    position is found again here, on the error path only.
    """
    line, column, byte = 0, 0, None
    try:
        with open_bytes(path, kind.compression) as fh:
            data = fh.read()
        data.decode(kind.encoding)
    except UnicodeDecodeError as again:
        before = data[:again.start]
        line = before.count(b"\n") + 1
        column = again.start - (before.rfind(b"\n") + 1) + 1
        byte = data[again.start]
    except Exception:  # the original error still says enough
        pass
    if byte is None:
        return InputError(f"{path}: not {_label(kind)} text ({exc.reason})")
    return InputError(
        f"{path}:{line}: not {_label(kind)} text (byte 0x{byte:02X} at column {column}); "
        "save the file as UTF-8 (in Excel: 'CSV UTF-8'), or convert it, e.g. "
        f"iconv -f WINDOWS-1252 -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}"
    )


def _label(kind: FileKind) -> str:
    return "UTF-16" if kind.encoding == "utf-16" else "UTF-8"


def text_stream(path: Path, kind: FileKind) -> io.TextIOWrapper:
    """The whole file as text, for readers that parse it themselves (JSON)."""
    return io.TextIOWrapper(open_bytes(path, kind.compression), encoding=kind.encoding)
