"""Every notebook in notebooks/ runs top to bottom on a fresh kernel.

Notebooks are documentation that executes: one that no longer runs is a broken
example, so each is executed with nbclient (kernel ``python3``) in an empty
temporary folder, and any cell error fails the test. Without the notebook tools
(the ``dev`` extra) the tests are skipped with a reason, except under CI, where a
skip would hide exactly the breakage they exist to catch.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TOOLS = ("nbclient", "nbformat", "ipykernel")


def _require_tools() -> None:
    missing = [name for name in TOOLS if importlib.util.find_spec(name) is None]
    if not missing:
        return
    reason = (f"executing notebooks needs {', '.join(missing)} "
              "(pip install -e '.[dev]')")
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: they must be installed under CI")
    pytest.skip(reason)


def _code(nb: object) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]  # type: ignore[attr-defined]


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no .ipynb file"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_saved_clean_and_defines_no_logic(path: Path) -> None:
    """Outputs are cleared (small diffs, no stale results); logic belongs in the library."""
    _require_tools()
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{path.name}: clear the outputs before saving")
    for source in _code(nb):
        for line in source.splitlines():
            assert not line.lstrip().startswith(("def ", "class ", "async def ")), (
                f"{path.name} defines {line.strip()!r}: move it into tracker/")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    _require_tools()
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}")
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    if path.name == "purge_2022.ipynb":
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) == 3, "expected the Apple, overview and replay charts"
        (cell,) = [c for c in nb.cells if "list_alerts(replay" in c.source]
        replay = cell.outputs[0]["data"]["text/plain"]
        assert "apple" in replay and "provisional" in replay and "confirmed" not in replay
