"""Every file and every CSV the tool writes goes through here.

Two rules live here, once each:

**CSV cells cannot become formulas.** Company names, metrics and sources come from
outside data, and a spreadsheet opening our CSV runs a cell that starts with ``=``,
``+``, ``-`` or ``@`` (or TAB/CR, which some spreadsheets skip before looking) as
a formula: ``=HYPERLINK("http://x")`` becomes a link, ``=cmd|...`` worse. Such text
cells (and headers) get a leading ``'`` (OWASP's advice), which spreadsheets show
as text. Numbers are left alone, whether stored as numbers or, as in a rejects
file, spelled as text: ``-3.2`` is data, not a formula. JSON output is never
touched: it is read by programs, which must get the value exactly.

**A file is either the old one or the whole new one.** Data goes to a temporary
file in the target's folder, is fsynced, and replaces the target by ``os.replace``
(atomic on POSIX and Windows). A full disk, a read-only folder, a file-size limit
or a missing folder leaves the old file as it was and no temporary file behind,
and surfaces as :class:`WriteError`: one line, "cannot write PATH: no space left
on device", exit code 3. Several files that belong together (a report and its
charts) are staged and put in place together, after every byte of them has been
written, so a disk filling up half way through leaves the old report whole.

This module stays light (no pandas import at module level): the CLI imports it.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from tracker.errors import WriteError

if TYPE_CHECKING:
    import pandas as pd

#: First characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


# -- CSV -------------------------------------------------------------------------------

def neutralize(cell: object) -> object:
    """``cell`` as a spreadsheet will show it as text, never run it as a formula."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def csv_text(frame: pd.DataFrame) -> str:
    """The CSV of ``frame`` (no index), with every text cell and header neutralized.

    Only text cells change: numeric, boolean and datetime columns are written by
    pandas exactly as ``frame.to_csv(index=False)`` would write them.
    """
    import pandas as pd

    safe = frame.copy()
    for col in safe.columns:
        dtype = safe[col].dtype
        if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype) \
                or pd.api.types.is_string_dtype(dtype):
            safe[col] = safe[col].astype(object).map(neutralize)
    safe.columns = [neutralize(c) for c in safe.columns]
    return safe.to_csv(index=False)


def write_csv(path: str | Path, frame: pd.DataFrame, *, parents: bool = False) -> Path:
    """Write ``frame`` as a neutralized CSV file, atomically (see :func:`write_file`)."""
    return write_file(path, csv_text(frame), parents=parents)


# -- atomic writes -----------------------------------------------------------------------

def write_file(path: str | Path, data: str | bytes, *, parents: bool = False) -> Path:
    """Replace ``path`` with ``data`` (text is UTF-8) as one atomic step.

    ``parents`` creates missing folders, for folders the tool owns (reports,
    rejects); a user's ``--output`` into a folder that does not exist is more
    likely a typo and is refused. Returns ``path``.
    """
    with staged() as stage:
        stage.write(path, data, parents=parents)
    return Path(path)


@contextmanager
def staged() -> Iterator[Stage]:
    """A :class:`Stage` whose files are put in place when the block ends without error.

    On any exception (ours or a bug's) every temporary file and every folder the
    stage created is removed, and the targets stay as they were.
    """
    stage = Stage()
    try:
        yield stage
    except BaseException:
        stage.discard()
        raise
    stage.commit()


class Stage:
    """Files written to temporaries beside their targets, renamed over them together.

    The disk space is taken while writing, not while renaming, so once every
    ``write`` has succeeded the renames do not run out of space.
    """

    def __init__(self) -> None:
        self._pending: dict[Path, Path] = {}  # target -> its temporary file
        self._made: list[Path] = []  # folders created here, deepest last

    def write(self, path: str | Path, data: str | bytes, *, parents: bool = False) -> Path:
        """Write ``data`` to a temporary file for ``path``; raises :class:`WriteError`."""
        shown = Path(path)
        target = Path(os.path.realpath(shown)) if shown.is_symlink() else shown
        payload = data.encode("utf-8") if isinstance(data, str) else data
        if target.is_dir():
            raise WriteError(shown, "it is a folder")
        if parents:
            self._mkdirs(shown, target.parent)
        fd, tmp_name = -1, None
        try:
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                            suffix=".tmp")
            _set_mode(fd, target)
            view = memoryview(payload)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.close(fd)
            fd = -1
        except OSError as exc:
            if fd != -1:
                os.close(fd)
            if tmp_name is not None:
                _unlink(Path(tmp_name))
            raise WriteError(shown, _reason(exc, target)) from exc
        old = self._pending.pop(target, None)
        if old is not None:
            _unlink(old)
        self._pending[target] = Path(tmp_name)
        return shown

    def commit(self) -> None:
        """Rename every temporary file over its target, then make the renames durable."""
        folders = set()
        while self._pending:
            target, tmp = next(iter(self._pending.items()))
            try:
                os.replace(tmp, target)
            except OSError as exc:
                self.discard()
                raise WriteError(target, _reason(exc, target)) from exc
            del self._pending[target]
            folders.add(target.parent)
        self._made.clear()
        for folder in folders:
            _fsync_folder(folder)

    def discard(self) -> None:
        """Remove the temporary files and the folders this stage made."""
        for tmp in self._pending.values():
            _unlink(tmp)
        self._pending.clear()
        for folder in reversed(self._made):
            with suppress(OSError):  # not empty: someone else put something there meanwhile
                folder.rmdir()
        self._made.clear()

    def _mkdirs(self, shown: Path, folder: Path) -> None:
        missing = []
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for f in reversed(missing):
            try:
                f.mkdir()
            except FileExistsError:
                if not f.is_dir():
                    raise WriteError(shown, f"{f} is not a folder") from None
                continue  # made by someone else meanwhile: fine
            except OSError as exc:
                raise WriteError(shown, _reason(exc, shown)) from exc
            self._made.append(f)


# -- folders ----------------------------------------------------------------------------

@contextmanager
def staged_folder(path: str | Path, *, marker: str) -> Iterator[Path]:
    """A temporary folder beside ``path`` that replaces it when the block ends cleanly.

    The rule of :func:`write_file` for a folder of files (a Parquet dataset): a reader
    sees the old folder or the whole new one. The new folder is renamed into place
    (the old one, if any, renamed aside first and then removed), so the only moment
    without ``path`` is between two renames. An existing ``path`` is replaced only if
    it holds ``marker`` (a folder this tool wrote) or nothing: any other folder is
    someone's data and is refused. On failure the temporary folder is removed.
    """
    import shutil

    target = Path(path)
    if target.exists() and not target.is_dir():
        raise WriteError(target, "it is a file, not a folder")
    if target.is_dir() and any(target.iterdir()) and not (target / marker).exists():
        raise WriteError(target, "the folder exists and was not written by tracker; "
                         "choose a new folder (or empty it)")
    try:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as exc:
        raise WriteError(target, _reason(exc, target)) from exc
    try:
        yield tmp
        (tmp / marker).touch()
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.{tmp.name[-12:]}.old")
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise WriteError(target, _reason(exc, target)) from exc
        raise
    _fsync_folder(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _reason(exc: OSError, target: Path) -> str:
    """Why a write failed, as the end of one sentence about ``target``."""
    if exc.errno == errno.ENOENT:
        return f"the folder {target.parent} does not exist"
    if exc.errno == errno.ENOTDIR:
        blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
        return f"{blocker} is not a folder" if blocker else "a part of the path is not a folder"
    if exc.errno == errno.EISDIR:
        return "it is a folder"
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _set_mode(fd: int, target: Path) -> None:
    """Give the new file the old one's permissions, or the usual ones for a new file.

    mkstemp makes files private (0600); a report served by a web server or a CSV
    shared with a team must not silently lose the permissions it had.
    """
    fchmod = getattr(os, "fchmod", None)
    if fchmod is None:
        return
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    fchmod(fd, mode)


def _umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make a rename survive a power cut; not possible (nor needed) everywhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    with suppress(OSError):
        path.unlink()


__all__ = ["FORMULA_STARTS", "Stage", "WriteError", "csv_text", "neutralize", "staged",
           "staged_folder", "write_csv", "write_file"]
