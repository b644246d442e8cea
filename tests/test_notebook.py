"""In a real Jupyter kernel the grids show inline while training goes on, with no warnings."""
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from conftest import ROOT, SMALL  # noqa: E402


def run_notebook(cells, cwd):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb.cells


def images_and_problems(cell):
    images = [o for o in cell.outputs if o.output_type == "display_data" and "image/png" in o.data]
    problems = [o for o in cell.outputs if o.output_type == "error"
                or (o.output_type == "stream" and o.name == "stderr" and "arning" in o.text)]
    return len(images), problems


def test_run_and_import_show_grids_inline(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND")  # the kernel picks its own inline backend, as Jupyter does
    args = [*SMALL, "--epochs=1", "--info_step=8", f"--data_dir={tiny_data}"]  # 16 steps: 2 reports
    cells = run_notebook([
        f"%run {ROOT / 'basic_gan.py'} {' '.join(args)} --out_dir=a",
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\nimport basic_gan\n"
        f"G, D, G_ema = basic_gan.main({[*args, '--out_dir=b']!r})",
        "import matplotlib.pyplot as plt; print(len(plt.get_fignums()), 'open figures')",
        "basic_gan.main(['--epoch=3'])",
        "basic_gan.main(['--sample=4', '--out_dir=b'])",
    ], tmp_path)
    for cell in cells[:2]:
        images, problems = images_and_problems(cell)
        assert problems == []
        assert images == 2 * 2 + 1  # a fake and a real grid per report, and the last fake grid
    assert "0 open figures" in cells[2].outputs[0].text
    # An error is its one line: no SystemExit traceback, no IPython "To exit: use 'exit'" warning.
    assert [(o.output_type, o.get("name"), o.get("text")) for o in cells[3].outputs] == [
        ("stream", "stderr", "basic_gan.py: error: unknown option --epoch; did you mean --epochs?\n")]
    assert [o.output_type for o in cells[4].outputs] == ["stream"]  # "wrote 4 samples", no tensor
    assert "wrote 4 samples" in cells[4].outputs[0].text
    assert not list((tmp_path / "a").glob("*_step*.png"))  # shown inline, not saved as files
