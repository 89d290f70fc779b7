"""notebooks/sweep.ipynb run by papermill with its parameters: the sweep folder is complete and the output notebook
shows the contact sheet and the gallery.

Its structure, defaults and nbval run are test_notebooks.py's (with the other notebooks); the gallery and the
notebook helpers without a kernel are test_widgets_sweep.py's; sweeps themselves are the library's tests.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from test_notebooks import code_cells, execute, kernel_env, python3_kernel  # noqa: F401 (fixtures)

from discolib.run.runs import RunFolder
from discolib.run.sweep import SHEET_FILE, read_sweep
from discolib_widgets.sweep import demo_sweep_path

NAME = "sweep.ipynb"


def cell_outputs(nb: object, call: str) -> list[dict]:
    (cell,) = [c for c in code_cells(nb) if call in c.source]  # type: ignore[arg-type]
    return cell.outputs


@pytest.mark.slow
@pytest.mark.usefixtures("kernel_env")
def test_papermill_sweep(tmp_path: Path) -> None:
    """A sweep file of 2 variants (the demo's 2 prompts, one seed) with max_variants 2 into output_root: every
    variant done in its run folder, the contact sheet displayed, the gallery shown, the check cell "done 2/2"."""
    demo = json.loads(demo_sweep_path().read_text(encoding="utf-8"))
    sweep_file = tmp_path / "two.json"
    sweep_file.write_text(json.dumps({**demo, "seeds": 1}), encoding="utf-8")
    out_root = tmp_path / "out"
    params = {"sweep_file": str(sweep_file), "output_root": str(out_root), "max_variants": 2}
    nb = execute(NAME, tmp_path / "sweep.out.ipynb", params, tmp_path)

    sweep_dir = out_root / "two"
    header, states = read_sweep(sweep_dir)
    assert header["executor"] == "local" and header["source"] == str(sweep_file)
    assert [s.status for s in states] == ["done", "done"], states
    for state in states:
        assert state.run_dir is not None and state.frames_done == state.frames_total == 3
        folder = RunFolder.open(sweep_dir / state.run_dir)
        frames = sorted(folder.frames_dir.glob("*.png"))
        assert [p.name for p in frames] == [folder.frame_path(i).name for i in range(3)]
        assert folder.read_record().status == "done"
    sheet = sweep_dir / SHEET_FILE
    assert sheet.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "sweep.out.ipynb", "two.json"]  # nothing elsewhere
    assert sorted(p.name for p in out_root.iterdir()) == ["two"]

    # The run cell: a line per variant, plain text updated in place (no progress-bar widgets left frozen).
    outputs = cell_outputs(nb, "sweep(sweep_path, sweep_dir")
    assert [list(o.get("data", {})) for o in outputs] == [["text/plain"]], outputs
    assert outputs[0]["data"]["text/plain"].splitlines() == [f"{s.id} ✓ done 3/3 {s.label}" for s in states]
    # The contact sheet cell: a line per variant, then the sheet itself as an image.
    outputs = cell_outputs(nb, "show_sweep_result(result)")
    images = [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    assert images == [sheet.read_bytes()]
    text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    for state in states:
        assert f"{state.id} ✓ done 3/3 {state.label}" in text
    # The gallery cell: a widget (its view in a live notebook).
    outputs = cell_outputs(nb, "show_sweep(sweep_dir)")
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), outputs
    (check,) = [c for c in code_cells(nb) if "sweep_summary(" in c.source]
    assert "".join(o.get("text", "") for o in check.outputs if o["output_type"] == "stream") == "done 2/2\n"
