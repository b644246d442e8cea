"""The edges a hostile new user finds: samples, classes and hints that must be right."""
import ast
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from conftest import ROOT, SMALL
from test_conditional import class_folders


def conditional_run(gan, root, names):
    gan.main([*SMALL, "--conditional", "--dataset=folder",
              f"--data_dir={class_folders(root / 'data', names)}", "--image_size=8",
              "--batch_size=12", "--epochs=1", f"--out_dir={root / 'run'}"])
    return root / "run"


def one_line_error(gan, capsys, args, code=2):
    with pytest.raises(SystemExit) as exit_:
        gan.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == code and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("names, asked, drawn", [
    (("01", "02", "10"), "02", "02"),  # a name always wins
    (("01", "02", "10"), "1", None),   # was: the class numbered 1, "02", silently
    (("1", "2", "10"), "0", None),     # was: the class numbered 0, "1"
    (("1", "2", "10"), "2", "2"),      # the name, not class number 2 ("10")
    # names that are no numbers: a number is a class number
    (("cats", "dogs", "owls"), "2", "owls"),
    (("cats", "dogs", "owls"), "²", None),    # a digit int() refuses: one line, not a traceback
])
def test_label_means_a_name_first_and_says_what_it_drew(gan, tmp_path, capsys, names, asked,
                                                        drawn):
    run = conditional_run(gan, tmp_path, names)
    names = sorted(names)  # the classes, in the order of their folders' names
    capsys.readouterr()
    if drawn is None:
        assert f"no class {asked!r}: the classes are {', '.join(names)}" in \
            one_line_error(gan, capsys, ["--sample=4", f"--label={asked}", f"--out_dir={run}"])
        return
    gan.main(["--sample=4", f"--label={asked}", f"--out_dir={run}"])
    assert f"drawing class {names.index(drawn)}, {drawn!r}" in capsys.readouterr().out
    assert [p.name for p in (run / "samples").iterdir()] == [f"{names.index(drawn)}_{drawn}"]


def test_generate_from_your_own_code_says_what_labels_it_needs(gan, tmp_path):
    G = gan.load_generator(conditional_run(gan, tmp_path, ("a", "b")) / "generator.pth")
    z = torch.randn(3, G.z_dim)
    for labels in (None, torch.tensor([0, 1, 2]), torch.tensor([-1, 0, 0])):
        with pytest.raises(ValueError, match="this generator is conditional: pass labels, "
                                             "a class number from 0 to 1"):
            gan.generate(G, z, labels)
    assert gan.generate(G, z, torch.tensor([0, 1, 1])).shape == (3, 64)


def test_label_on_a_training_command_is_refused(gan, tiny_data, tmp_path, capsys):
    assert "--label chooses the class --sample draws" in \
        one_line_error(gan, capsys, [*SMALL, f"--data_dir={tiny_data}", f"--out_dir={tmp_path}",
                                     "--label=3"])
    assert not any(tmp_path.iterdir())


def test_only_the_scripts_own_temp_files_are_cleaned_up(gan, tiny_data, tmp_path, capsys):
    """A run once deleted every *.tmp in out_dir, and a samples.tmp/ folder a stopped --sample left
    behind made every later run die with IsADirectoryError."""
    (tmp_path / "notes.tmp").write_text("mine")
    (tmp_path / "samples.tmp").mkdir()
    (tmp_path / "samples.tmp" / "0.png").write_bytes(b"half")
    (tmp_path / "checkpoint.pt.tmp").write_bytes(b"a save a kill cut short")
    gan.main([*SMALL, "--max_steps=2", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}"])
    assert ((tmp_path / "notes.tmp").read_text() == "mine"
            and not (tmp_path / "checkpoint.pt.tmp").exists())
    gan.main(["--resume", f"--out_dir={tmp_path}", "--max_steps=4"])
    gan.main(["--sample=3", f"--out_dir={tmp_path}"])
    assert (not (tmp_path / "samples.tmp").exists()
            and len(list((tmp_path / "samples").iterdir())) == 3)


def test_counts_read_as_words(gan, tiny_data, tmp_path, capsys):
    gan.main([*SMALL, "--epochs=1", f"--data_dir={tiny_data}", f"--out_dir={tmp_path / 'a'}"])
    # not "1 epochs"
    assert "in fp32: 1 epoch of 16 steps, a report every 5" in capsys.readouterr().out
    pictures = class_folders(tmp_path / "pics", ("x",), each=20)
    (pictures / "x" / "broken.png").write_bytes(b"not a png")
    gan.main([*SMALL, "--dataset=folder", f"--data_dir={pictures}", "--image_size=8",
              "--max_steps=1", f"--out_dir={tmp_path / 'b'}"])
    assert "skipped 1 unreadable picture of 21; the first:" in capsys.readouterr().err


def test_main_runs_outside_the_main_thread(gan, tiny_data, tmp_path):
    """A GUI, a web app or a test runner may call main() from a worker thread, where Python allows
    no signal handlers: it trains all the same (Ctrl-C is then the caller's)."""
    done = []
    worker = threading.Thread(target=lambda: done.append(gan.main(
        [*SMALL, "--max_steps=2", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}"])))
    worker.start()
    worker.join(120)
    assert done and done[0][0] is not None and (tmp_path / "generator.pth").is_file()


def test_a_gpu_that_is_not_there_is_refused(gan, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert ("device 'cuda:3' was asked for, but torch sees 1 GPU: "
            "use --device=cuda:0 to cuda:0") in \
        one_line_error(gan, capsys, ["--device=cuda:3"])


def test_the_notebook_resume_hint_is_python_for_any_folder(gan, monkeypatch):
    monkeypatch.setattr(gan, "in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: SimpleNamespace(
        user_ns={"np": sys, "gan": gan})))  # a kernel that imported it as gan
    gan.out_dir = "Bob's run"
    hint = gan.resume_command()
    # imported: by the name it has there
    assert hint == """gan.main(['--resume', "--out_dir=Bob's run"])"""
    call = ast.parse(hint).body[0].value
    assert ast.literal_eval(call.args[0]) == ["--resume", "--out_dir=Bob's run"]


@pytest.mark.parametrize("out_dir, offered", [("outputs/", "--out_dir=outputs_2"), (".", "_2")])
def test_a_folder_holding_only_weights_offers_no_resume_and_a_free_folder_beside_it(
        gan, tmp_path, monkeypatch, capsys, out_dir, offered):
    run = tmp_path / "outputs"
    run.mkdir()
    torch.save({}, run / "generator.pth")
    monkeypatch.chdir(run if out_dir == "." else tmp_path)
    err = one_line_error(gan, capsys, [f"--out_dir={out_dir}"])
    assert "holds a run (generator.pth) that a new one would replace: start the new one with" in err
    assert "--resume" not in err and offered in err and "outputs/_2" not in err and "._2" not in err
    if out_dir == ".":
        assert f"--out_dir={tmp_path / 'outputs_2'}" in err  # beside it, not hidden inside it


def test_a_refusal_writes_nothing_in_a_folder_that_was_there(gan, tiny_data, tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("mine")
    one_line_error(gan, capsys, [*SMALL, f"--data_dir={tmp_path / 'nothing'}",
                                 f"--out_dir={tmp_path}",
                                 "--dataset=folder"])  # refused once the folder is locked
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]  # no .lock left behind


def test_sample_folders_read_by_imagefolder_get_gs_classes(gan, tiny_data, tmp_path):
    """Fashion-MNIST's names do not sort in class order: ImageFolder once gave 'Ankle boot' 0."""
    from torchvision.datasets import ImageFolder
    gan.main([*SMALL, "--conditional", "--dataset=FashionMNIST", f"--data_dir={tiny_data}",
              "--max_steps=2", f"--out_dir={tmp_path}"])
    gan.main(["--sample=30", f"--out_dir={tmp_path}"])
    saved = torch.load(tmp_path / "samples_labels.pt", weights_only=True)
    assert (saved["classes"][:2] == ["T-shirt/top", "Trouser"]
            and saved["labels"].tolist() == [i % 10 for i in range(30)])
    folder = ImageFolder(tmp_path / "samples")
    assert (folder.classes[:3] == ["0_T-shirt-top", "1_Trouser", "2_Pullover"]
            and folder.classes[9] == "9_Ankle boot")
    by_index = {int(Path(path).stem): target for path, target in folder.samples}
    # each sample's class, G's number
    assert [by_index[i] for i in range(30)] == saved["labels"].tolist()


def test_a_stopped_sample_leaves_the_samples_from_before_whole(gan, tiny_data, tmp_path,
                                                               monkeypatch, capsys):
    gan.main([*SMALL, "--max_steps=2", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}"])
    gan.main(["--sample=5", f"--out_dir={tmp_path}"])
    before = {p.name: p.read_bytes()
              for p in [tmp_path / "samples.pt", *(tmp_path / "samples").iterdir()]}
    saves = []

    def ctrl_c_after_three(self, path, *args, **kwargs):
        saves.append(path)
        if len(saves) > 3:
            raise KeyboardInterrupt
        return real_save(self, path, *args, **kwargs)
    real_save = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", ctrl_c_after_three)
    assert "stopped: the samples from before are as they were" in \
        one_line_error(gan, capsys, ["--sample=7", f"--out_dir={tmp_path}"], code=130)
    after = {p.name: p.read_bytes()
             for p in [tmp_path / "samples.pt", *(tmp_path / "samples").iterdir()]}
    assert after == before and not (tmp_path / "samples.tmp").exists()
    monkeypatch.setattr(Image.Image, "save", real_save)
    gan.main(["--resume", f"--out_dir={tmp_path}", "--max_steps=3"])  # and the folder works on


def test_a_sample_too_big_for_the_disk_is_refused_before_writing(gan, tiny_data, tmp_path,
                                                                  monkeypatch, capsys):
    gan.main([*SMALL, "--max_steps=2", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}"])
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.setattr(gan.shutil, "disk_usage",
                        lambda path: SimpleNamespace(free=10**6))  # 1 MB free
    err = one_line_error(gan, capsys, ["--sample=1000", f"--out_dir={tmp_path}"])
    assert ("1000 samples need about 0.0 GB on disk (samples.pt and a PNG each), more than the "
            "0.0 GB free: try --sample=138" in err
            and sorted(p.name for p in tmp_path.iterdir()) == before)


def test_a_class_with_no_readable_picture_is_no_class(gan, tmp_path, capsys):
    root = class_folders(tmp_path / "pics", ("cats", "dogs", "owls"))
    for png in (root / "owls").iterdir():
        png.write_bytes(b"not a png")
    gan.conditional, gan.dataset, gan.data_dir, gan.image_size = True, "folder", str(root), 8
    images, labels, classes = gan.load_images()
    assert (classes == ["cats", "dogs"] and labels.tolist() == [0] * 12 + [1] * 12
            and len(images) == 24)
    assert ("warning: no class for owls: not one of its pictures could be read"
            in capsys.readouterr().err)


def test_tiff_is_read_and_class_names_are_one_however_the_os_spells_them(gan, tmp_path):
    import unicodedata
    root = tmp_path / "pics"
    for i, form in enumerate(("NFC", "NFD")):  # é as one code point, and as e + a combining accent
        (root / unicodedata.normalize(form, "café")).mkdir(parents=True)
        Image.new("L", (8, 8), 10 * i).save(root / unicodedata.normalize(form, "café") / f"{i}.tif")
    (root / "tea").mkdir()
    Image.new("L", (8, 8), 200).save(root / "tea" / "0.tiff")
    gan.conditional, gan.dataset, gan.data_dir, gan.image_size = True, "folder", str(root), 8
    images, labels, classes = gan.load_images()
    assert (classes == [unicodedata.normalize("NFC", "café"), "tea"]
            and sorted(labels.tolist()) == [0, 0, 1])


def test_a_huge_picture_prints_no_pillow_warning(gan, tmp_path, capsys, monkeypatch):
    # so a 10 x 10 picture is a "bomb" warning's size
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    (tmp_path / "p").mkdir()
    Image.new("L", (10, 10), 128).save(tmp_path / "p" / "big.png")
    gan.dataset, gan.data_dir, gan.image_size = "folder", str(tmp_path / "p"), 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, _, _ = gan.load_images()
    assert len(images) == 1 and not [w for w in caught if "DecompressionBomb" in str(w.category)]
    assert "DecompressionBomb" not in capsys.readouterr().err


def test_tensorboard_shows_each_step_once_after_a_kill_and_a_resume(gan, tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    args = [*SMALL, "--info_step=5", "--epochs=2", f"--data_dir={tiny_data}",
            f"--out_dir={tmp_path}"]
    gan.main([*args, "--max_steps=16"])  # the checkpoint at step 16
    at_16 = (tmp_path / "checkpoint.pt").read_bytes()
    # reports 20, 25, 30; saves at 31
    gan.main(["--resume", f"--out_dir={tmp_path}", "--max_steps=31"])
    (tmp_path / "checkpoint.pt").write_bytes(at_16)  # as if killed at step 31, before its save
    gan.main(["--resume", f"--out_dir={tmp_path}"])  # 16 to 32 again
    events = EventAccumulator(str(next((tmp_path / "runs").iterdir())))
    events.Reload()
    assert [e.step for e in events.Scalars("losses/G")] == [5, 10, 15, 20, 25, 30]


def test_a_constant_set_in_a_later_cell_is_taken_and_kept(gan, tiny_data, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.setattr(gan, "YOURS", {})
    monkeypatch.setattr(gan, "APPLIED", {})
    args = [*SMALL, f"--data_dir={tiny_data}"]
    gan.epochs = 1  # a later cell: epochs = 1 (or basic_gan.epochs = 1)
    gan.main([*args, f"--out_dir={tmp_path / 'a'}"])
    out = capsys.readouterr().out
    assert ("note: taking epochs=1, set after the constants cell" in out
            and "1 epoch of 16 steps" in out)
    # kept, and not the last call's flags
    gan.main([*args, "--max_steps=20", f"--out_dir={tmp_path / 'b'}"])
    assert "1 epoch of 16 steps" in capsys.readouterr().out and gan.max_steps == 20
    gan.epochs = gan.DEFAULTS["epochs"]  # the constants cell run again: as written
    gan.main([*args, "--max_steps=1", f"--out_dir={tmp_path / 'c'}"])
    out = capsys.readouterr().out
    assert "note:" not in out and f"{gan.DEFAULTS['epochs']} epochs of 16 steps" in out


def test_a_name_too_long_for_the_os_is_one_line(gan, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert ("out_dir 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... cannot be used: "
            "File name too long") in one_line_error(gan, capsys, ["--out_dir=" + "x" * 300])
    assert "data_dir" in one_line_error(gan, capsys, ["--data_dir=" + "d/" + "y" * 300])
    # bad input writes nothing: not even the folder above data_dir
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_pictures_are_decoded_is_one_line(gan, tmp_path, monkeypatch, capsys):
    root = class_folders(tmp_path / "pics", ("x",), each=20)
    monkeypatch.setattr(gan, "read_picture", lambda path: (_ for _ in ()).throw(KeyboardInterrupt))
    assert "stopped by Ctrl-C" in one_line_error(
        gan, capsys, [*SMALL, "--dataset=folder", f"--data_dir={root}",
                      f"--out_dir={tmp_path / 'o'}"], code=130)
    assert not (tmp_path / "o").exists()


def test_a_dataset_bigger_than_the_gpus_free_memory_is_refused(gan, tiny_data, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (100_000, 10**9))  # 0.1 MB free
    gan.data_dir = str(tiny_data)
    with pytest.raises(SystemExit):
        gan.training_data(torch.device("cuda"))
    assert ("256 images need 0.0 GB, more than half of what is free on cuda: try a smaller"
            in capsys.readouterr().err)


def test_a_full_disk_during_sample_names_the_samples_not_the_training_checkpoint(
        gan, tiny_data, tmp_path, monkeypatch, capsys):
    import errno
    gan.main([*SMALL, "--max_steps=2", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}"])
    gan.main(["--sample=4", f"--out_dir={tmp_path}"])
    before = (tmp_path / "samples.pt").read_bytes()
    monkeypatch.setattr(Image.Image, "save", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    err = one_line_error(gan, capsys, ["--sample=9", f"--out_dir={tmp_path}"], code=1)
    assert ("No space left on device. The samples from before are as they were" in err
            and "checkpoint" not in err)
    assert ((tmp_path / "samples.pt").read_bytes() == before
            and not (tmp_path / "samples.tmp").exists())


def test_samples_png_is_described_as_it_is_drawn(gan, tmp_path, capsys):
    run = conditional_run(gan, tmp_path, ("a", "b", "c"))
    capsys.readouterr()
    gan.main(["--sample=60", f"--out_dir={run}"])
    assert "8 a class to samples.png" in capsys.readouterr().out  # was: "the first 24", of 60 drawn
    assert Image.open(run / "samples.png").size == (82, 32)  # 3 rows of 8


def test_a_cpu_run_never_touches_the_gpus_random_states(gan, tiny_data, tmp_path, monkeypatch):
    """get_rng_state_all() opened a context on every GPU at each save, even with --device=cpu."""
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: pytest.fail("a GPU was touched"))
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda *a: pytest.fail("a GPU was touched"))
    gan.main([*SMALL, "--max_steps=2", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}"])
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["device_rng"] is None


def test_sample_needs_about_one_samples_pt_of_memory(gan, tmp_path):
    """It once held three float copies of all the samples while writing the PNGs."""
    import subprocess
    G = gan.Generator(8, (32, 64))
    torch.save({"state_dict": G.state_dict(), "config": {"z_dim": 8, "g_widths": (32, 64)}},
               tmp_path / "generator.pth")
    peak = ("import resource, runpy, sys; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__'); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    for n in (1, 12000):  # both at once: the baseline (imports) and 12,000 samples
        (tmp_path / str(n)).mkdir()
        shutil.copy(tmp_path / "generator.pth", tmp_path / str(n))
    runs = [subprocess.Popen([sys.executable, "-c", peak, str(ROOT / "basic_gan.py"),
                              f"--sample={n}", f"--out_dir={tmp_path / str(n)}"],
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "MPLBACKEND": "Agg"}) for n in (1, 12000)]
    one, many = (int(run.communicate(timeout=120)[0].splitlines()[-1]) for run in runs)
    assert many - one < 1.5 * 12000 * 28 * 28 * 4  # 38 MB of samples; it was about 4 times that


def test_the_resume_hint_after_a_first_run_is_main_itself(gan, monkeypatch):
    """%run basic_gan.py stopped by Ctrl-C: the hint was basic_gan.main(...), a NameError there,
    since %run puts main (not a module named basic_gan) among the notebook's names when it ends."""
    from test_config import load_file
    ran = load_file(gan.__file__, "ran_by_percent_run")
    vars(ran)["__name__"] = "__main__"  # as %run runs it
    monkeypatch.setattr(ran, "in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: SimpleNamespace(
        user_ns={"np": sys})))  # nothing of it there yet: the first %run
    assert ran.resume_command() == "main(['--resume', '--out_dir=outputs'])"
    del vars(ran)["__name__"]  # as %run leaves it once it ends: the hint a later cell prints
    assert ran.resume_command() == "main(['--resume', '--out_dir=outputs'])"


def test_a_main_imported_by_name_is_not_taken_for_percent_run(gan, monkeypatch):
    """from basic_gan import main: the notebook's own lr, seed or device are not constants, and
    main() writes none of its constants into the notebook's names; the hint is main() itself."""
    names = {"main": gan.main, "lr": 1.0, "device": "my own"}
    monkeypatch.setattr(gan, "in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "IPython", SimpleNamespace(get_ipython=lambda: SimpleNamespace(
        user_ns=names)))
    assert gan.notebook_names() is None
    assert gan.resume_command() == "main(['--resume', '--out_dir=outputs'])"
