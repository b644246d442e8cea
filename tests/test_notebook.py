"""In a real Jupyter kernel the grids show inline while training goes on, with no warnings: through
%run, import, the whole file pasted into a cell, and its # %% cells run one after another."""
import re

import pytest
import torch

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from conftest import ROOT, SMALL, edited  # noqa: E402


def run_notebook(cells, cwd):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return nb.cells


def images_and_problems(cell):
    images = [o for o in cell.outputs if o.output_type == "display_data" and "image/png" in o.data]
    problems = [o for o in cell.outputs if o.output_type == "error"
                or (o.output_type == "stream" and o.name == "stderr" and "arning" in o.text)]
    return len(images), problems


def test_run_and_import_show_grids_inline(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND")  # the kernel picks its own inline backend, as Jupyter does
    args = [*SMALL, "--epochs=1", "--info_step=8", f"--data_dir={tiny_data}"]  # 16 steps: 2 reports
    run = f"%run {ROOT / 'basic_gan.py'} {' '.join(args)} --out_dir=a"
    cells = dict(zip(["run", "again", "hint", "edit", "main", "import", "figures", "typo", "sample",
                      "refused", "imported hint"], run_notebook([
        # main() itself
        f"{run}\nhint = resume_command()\nprint(hint)\nget_ipython().run_cell(hint)",
        run,  # the same cell again, the most common notebook habit: refused, with what to type
        "get_ipython().run_cell(hint)",
        "lr = 1e-3",  # a constant set in a later cell, in the names %run left
        f"G, D, G_ema = main({[*args, '--out_dir=c', '--max_steps=2']!r})",
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\nimport basic_gan\n"
        f"G, D, G_ema = basic_gan.main({[*args, '--out_dir=b']!r})",
        "import matplotlib.pyplot as plt; print(len(plt.get_fignums()), 'open figures')",
        "basic_gan.main(['--epoch=3'])\nprint('not reached')",
        "basic_gan.main(['--sample=4', '--out_dir=b'])",
        "G, D, G_ema = basic_gan.main(['--out_dir=b'])",  # b holds a run: refused, and no TypeError
        "print(basic_gan.resume_command())",
    ], tmp_path)))
    for cell in cells["run"], cells["import"]:
        images, problems = images_and_problems(cell)
        assert problems == []
        assert images == 2 * 2 + 1  # a fake and a real grid per report, and the last fake grid
    assert "0 open figures" in cells["figures"].outputs[0].text
    said = "".join(o.get("text", "") for o in cells["run"].outputs)
    assert ("main(['--resume', '--out_dir=a'])\n" in said
            and "a has finished its 1 epoch (16 steps)" in said)
    said = "".join(o.get("text", "") for o in cells["again"].outputs)
    assert "a holds a run (checkpoint.pt) that a new one would replace: go on with it with " \
           "main(['--resume', '--out_dir=a'])" in said  # main itself: %run defined no basic_gan
    assert "a has finished its 1 epoch" in cells["hint"].outputs[0].text  # the hint runs there
    said = "".join(o.get("text", "") for o in cells["main"].outputs)
    assert "note: taking lr=0.001, set after the constants cell" in said
    assert torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)["config"]["lr"] == 1e-3
    # An error is its one line, and the cell stops there: no SystemExit traceback, no IPython
    # "To exit: use 'exit'" warning, and no TypeError where the cell unpacks what main() returns.
    typo = [(o.output_type, o.get("name"), o.get("text"), o.get("traceback"))
            for o in cells["typo"].outputs]
    assert typo == [
        ("stream", "stderr",
         "basic_gan.py: error: unknown option --epoch; did you mean --epochs?\n", None),
        ("error", None, None, [])]
    assert [o.output_type for o in cells["refused"].outputs] == ["stream", "error"]
    assert "b holds a run (checkpoint.pt)" in cells["refused"].outputs[0].text
    assert cells["refused"].outputs[1].traceback == []
    assert (cells["imported hint"].outputs[0].text
            == "basic_gan.main(['--resume', '--out_dir=b'])\n")
    # "wrote 4 samples", no tensor
    assert [o.output_type for o in cells["sample"].outputs] == ["stream"]
    assert "wrote 4 samples" in cells["sample"].outputs[0].text
    assert not list((tmp_path / "a").glob("*_step*.png"))  # shown inline, not saved as files


def small_constants(tiny_data, out_dir):
    return dict(g_widths=(32, 64), d_widths=(64, 32), z_dim=8, batch_size=16, device="cpu",
                precision="fp32", epochs=1, info_step=8, data_dir=str(tiny_data), out_dir=out_dir)


def test_the_file_pasted_into_one_cell_trains_with_its_edited_constants(tiny_data, tmp_path,
                                                                        monkeypatch):
    """Colab's first move: the whole file in one cell. No __file__, and the kernel's own -f argv."""
    monkeypatch.delenv("MPLBACKEND")
    cells = run_notebook([
        "my_widths = [3, 4]\nseed = 5\nepochs = 7",  # the user's own cell first, one name shared
        edited(**small_constants(tiny_data, "pasted")),
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import basic_gan\n"
        "print(sorted(DEFAULTS) == sorted(basic_gan.DEFAULTS), "
        "DEFAULTS['epochs'], epochs, z_dim, seed)",
        "main(['--help'])",
    ], tmp_path)
    images, problems = images_and_problems(cells[1])
    assert problems == [] and images == 2 * 2 + 1  # two reports, and the last grid
    assert (tmp_path / "pasted" / "generator.pth").is_file()
    # only its own constants, as the file sets them
    assert cells[2].outputs[0].text == "True 1 1 8 0\n"
    help_text = cells[3].outputs[0].text
    assert ("Adam learning rate: D's, and G's n_critic times it" in help_text
            and "python basic_gan.py --resume" in help_text)
    assert "my_widths" not in help_text and "my_widths" not in torch.load(
        tmp_path / "pasted" / "checkpoint.pt", weights_only=True)["config"]


def test_main_without_arguments_in_a_kernel_uses_the_file_as_written(tiny_data, tmp_path,
                                                                     monkeypatch):
    monkeypatch.delenv("MPLBACKEND")
    (tmp_path / "basic_gan.py").write_text(edited(**small_constants(tiny_data, "imported")))
    cells = run_notebook(["import basic_gan\nG, D, G_ema = basic_gan.main()\nprint(G.z_dim)"],
                         tmp_path)
    images, problems = images_and_problems(cells[0])
    assert problems == [] and images == 2 * 2 + 1
    # the edited z_dim, not the kernel's -f as an argument
    assert cells[0].outputs[-1].text.endswith("\n8\n")


def test_the_cells_run_one_after_another(tiny_data, tmp_path, monkeypatch):
    """VS Code, PyCharm and Jupytext open the # %% cells as a notebook; Run All trains."""
    monkeypatch.delenv("MPLBACKEND")
    source = edited(**small_constants(tiny_data, "cells"))
    cells = re.split(r"^(?=# %%)", source, flags=re.M)
    assert len(cells) >= 10 and all(c.startswith("# %%") for c in cells[1:])
    ran = run_notebook(["my_widths = [3, 4]", *cells,
                        "print('my_widths' in DEFAULTS, 'epochs' in DEFAULTS)"], tmp_path)[1:]
    # the constants cell's text, found among the cells run
    assert ran[-1].outputs[0].text == "False True\n"
    ran = ran[:-1]
    shown = [images_and_problems(cell) for cell in ran]
    assert all(problems == [] for _, problems in shown)
    assert sum(images for images, _ in shown) == 2 * 2 + 1  # all in the last cell, which trains
    assert (tmp_path / "cells" / "generator.pth").is_file()
