"""benchmarks/quality.py on tiny generated digits:
it trains its CNN, caches it, and ranks samples."""
import json
import sys

import pytest
import torch

import basic_gan
from conftest import ROOT
from idx import fake_digits, write_dataset

sys.path.insert(0, str(ROOT / "benchmarks"))
import quality  # noqa: E402


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """Labelled blobs to train the scorer's CNN on, 1000 real-like samples and 1000 of noise."""
    tmp_path = tmp_path_factory.mktemp("quality")
    data = write_dataset(tmp_path / "data", fake_digits(256), fake_digits(1000, seed=1))  # CNN: 256
    torch.save(fake_digits(1200, seed=2)[0].float().div(255).unsqueeze(1), tmp_path / "real.pt")
    torch.save(torch.rand(1000, 1, 28, 28), tmp_path / "noise.pt")
    return tmp_path, [f"--data_dir={data}", f"--cache={tmp_path / 'cache'}"]


def test_quality_scores_real_digits_above_noise(blobs, capsys):
    tmp_path, args = blobs
    args = [*args, "--n=2000"]
    accuracy, reference, good = quality.main([str(tmp_path / "real.pt"), *args])
    assert accuracy > 0.9  # the blobs are easy to tell apart
    assert len(list((tmp_path / "cache").iterdir())) == 1  # trained once, then cached
    _, _, bad = quality.main([str(tmp_path / "noise.pt"), *args])
    assert good["fid"] < bad["fid"] and good["is"] > bad["is"]
    assert abs(sum(good["shares"]) - 1) < 1e-3 and good["min_share"] > 0.03
    assert (tmp_path / "digit_shares.png").is_file()
    out = capsys.readouterr().out
    assert "real training images" in out  # a train and a test split: the test one is the reference
    assert "FID on 1000 samples vs 1000 reference images" in out  # the counts it used, not --n


@pytest.mark.parametrize("samples, args, message", [
    (4, [], "holds 4 samples, too few for a meaningful FID: write at least 1000"),
    (1, [], "holds 1 samples, too few"),
    (1000, ["--n=0"], "--n=0 is too few samples for a meaningful FID"),
    (None, [], "no file"),
])
def test_quality_refuses_too_few_samples_in_one_line(blobs, tmp_path, capsys, samples, args,
                                                     message):
    path = tmp_path / "samples.pt"
    if samples:
        torch.save(torch.rand(samples, 1, 28, 28), path)
    with pytest.raises(SystemExit) as exit_:
        quality.main([str(path), *blobs[1], *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1
    assert "--out_dir" not in err  # quality.py has no such option


def test_speed_takes_a_folder_of_idx_files(tiny_data, monkeypatch):
    import speed
    monkeypatch.setattr(basic_gan, "data_dir", basic_gan.data_dir)  # speed.py sets it
    monkeypatch.setattr(basic_gan, "device", basic_gan.device)
    monkeypatch.setattr(basic_gan, "precision", basic_gan.precision)
    results = speed.main([f"--data_dir={tiny_data}", "--steps=2", "--rounds=1", "--device=cpu",
                          "--precision=fp32", f"--against={ROOT / 'basic_gan.py'}",
                          "--conditional"])  # the other version's conditional step too
    assert set(results) == {"textbook", "basic_gan fp32", "against fp32", "basic_gan bf16",
                            "conditional fp32", "against conditional fp32"}
    assert all(v > 0 for v in results.values())
    assert torch.get_float32_matmul_precision() == "high"  # TF32 on a GPU, as in training


def test_quality_says_in_one_line_what_it_can_score(blobs, tmp_path, capsys):
    torch.save(torch.rand(1000, 3, 32, 32), tmp_path / "colour.pt")
    with pytest.raises(SystemExit) as exit_:
        quality.main([str(tmp_path / "colour.pt"), *blobs[1]])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "draws 3 x 32 x 32 images; the scoring CNN reads 1 x 28 x 28 ones" in err


@pytest.mark.parametrize("args, message", [
    (["--device=cuda"], "torch sees no CUDA GPU here"),
    (["--data_dir=pictures"],
     "holds no train-images-idx3-ubyte(.gz): speed.py times 28 x 28 digits"),
    # was a ZeroDivisionError
    (["--steps=0"], "--steps=0 --rounds=3: time at least one step in one round"),
    (["--rounds=0"], "--steps=200 --rounds=0: time at least one step"),
    (["--device=tpu"], "--device=tpu: speed.py times auto, cpu, cuda or mps"),
    (["--against=nowhere.py"], "--against=nowhere.py: no such file"),
])
def test_speed_refuses_what_it_cannot_time_in_one_line(tmp_path, monkeypatch, capsys, args,
                                                       message):
    import speed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pictures").mkdir()
    with pytest.raises(SystemExit) as exit_:
        speed.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1


def test_quality_reports_the_label_accuracy_of_a_conditional_generator(blobs, tmp_path, capsys):
    images, labels = fake_digits(1024, seed=3)
    data = write_dataset(tmp_path / "data", (images, labels), fake_digits(10))
    saved = basic_gan.config()
    basic_gan.main(["--g_widths=(32,64)", "--d_widths=(64,32)", "--z_dim=8", "--device=cpu",
                    "--precision=fp32", "--conditional", f"--data_dir={data}",
                    f"--out_dir={tmp_path / 'run'}", "--batch_size=32", "--epochs=40",
                    "--info_step=10000"])
    vars(basic_gan).update(saved)
    capsys.readouterr()
    _, _, fake = quality.main([str(tmp_path / "run" / "generator.pth"), *blobs[1], "--n=1000"])
    assert fake["label_accuracy"] > 0.8  # the blobs of each class sit in a place of their own
    assert "label accuracy: the CNN reads" in capsys.readouterr().out


@pytest.mark.parametrize("what, message", [
    ("checkpoint",
     "checkpoint.pt is not a samples.pt (N x 1 x 28 x 28 images): pass a generator.pth"),
    ("text", "notes.pt is not a samples.pt (UnpicklingError): pass a generator.pth"),
    ("folder classes",
     "generator.pth draws the classes cats, dogs, not MNIST's; score it with the --dataset"),
    ("missing", "generator.pth: train first"),
])
def test_quality_refuses_what_is_not_samples_in_one_line(blobs, tmp_path, capsys, what, message):
    if what == "checkpoint":
        path = tmp_path / "checkpoint.pt"
        torch.save({"format": 3, "run": {}}, path)
    elif what == "text":
        (path := tmp_path / "notes.pt").write_text("my notes")
    else:
        path = tmp_path / "generator.pth"
        if what == "folder classes":  # a conditional G whose class numbers are not MNIST's digits
            G = basic_gan.Generator(8, (16,), classes=2)
            config = {"z_dim": 8, "g_widths": (16,), "conditional": True, "channels": 1,
                      "image_size": 28}
            torch.save({"state_dict": G.state_dict(), "classes": ["cats", "dogs"],
                        "config": config}, path)
    with pytest.raises(SystemExit) as exit_:
        quality.main([str(path), *blobs[1]])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err


def test_fid_of_a_set_against_itself_is_zero_not_minus_zero():
    torch.manual_seed(0)  # a set whose rounding printed -0.00 before
    features = torch.randn(200, 16, dtype=torch.float64)
    assert f"{quality.frechet_distance(features, features):.2f}" == "0.00"


def test_load_generator_in_your_own_code_raises_an_error_in_words(tmp_path):
    with pytest.raises(ValueError, match=r"no generator.pth in .*: train first"):  # not SystemExit
        basic_gan.load_generator(tmp_path / "generator.pth")
    (tmp_path / "generator.pth").write_text("not torch")
    with pytest.raises(basic_gan.BadFile, match="is corrupt or not a basic_gan generator"):
        basic_gan.load_generator(tmp_path / "generator.pth")


def test_time_to_quality_times_whole_commands_and_draws_the_curve(blobs, tmp_path, capsys):
    import time_to_quality
    data = next(a for a in blobs[1] if a.startswith("--data_dir=")).split("=", 1)[1]
    small = ("--g_widths=(32,64) --d_widths=(64,32) --z_dim=8 --batch_size=32 --device=cpu "
             "--precision=fp32")
    points = time_to_quality.main(["--recipe", f"small={small}", "--dataset", "MNIST",
                                   f"--mnist_dir={data}", "--epochs", "1", "--n=1000",
                                   f"--results={tmp_path / 'r.jsonl'}",
                                   f"--cache={blobs[1][1].split('=', 1)[1]}",
                                   f"--keep={tmp_path / 'runs'}"])
    assert [(p["recipe"], p["epochs"]) for p in points] == [("small", 1)]
    # --keep kept it
    assert (tmp_path / "runs" / "small_MNIST_s0_e1_tNone" / "generator.pth").is_file()
    assert all(p["wall_s"] > 0 and p["fid"] >= 0 and "cores" in p["cpu"] for p in points)
    assert (tmp_path / "r.png").is_file() and "small" in capsys.readouterr().out
    # no new runs
    again = time_to_quality.main(["--plot_only", f"--results={tmp_path / 'r.jsonl'}"])
    assert again == points


def test_time_to_quality_keeps_reading_a_run_that_writes_more_than_a_pipe_holds(
        tmp_path, monkeypatch, capsys):
    import threading
    import time_to_quality
    chatty = tmp_path / "chatty"  # stands in for python: 2 MB on stderr, as 40 epochs of a bar do
    chatty.write_text("#!/bin/sh\nyes progress | head -n 250000 >&2\necho 'last words' >&2\n"
                      "exit 1\n")
    chatty.chmod(0o755)
    monkeypatch.setattr(time_to_quality.sys, "executable", str(chatty))
    outcome = []

    def run():
        with pytest.raises(SystemExit) as exit_:
            time_to_quality.one_point("r", [], "MNIST", "data", 0, 1, None, tmp_path, tmp_path)
        outcome.append(exit_.value.code)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)  # with stderr on a pipe nobody read, the run waited forever
    err = capsys.readouterr().err
    assert outcome == [2] and err.count("\n") == 1, err
    # a run that failed on its own: the last thing it said
    assert (err.startswith("time_to_quality.py: error: ")
            and "saved no generator: ['last words']" in err)


def test_time_to_quality_says_in_words_that_stop_at_came_before_the_first_save(
        tmp_path, monkeypatch, capsys):
    import time_to_quality
    slow = tmp_path / "slow"  # stands in for python: still starting when the Ctrl-C comes
    slow.write_text(f"#!{sys.executable}\nimport signal, time\n"
                    "signal.signal(signal.SIGINT, signal.default_int_handler)\ntime.sleep(60)\n")
    slow.chmod(0o755)
    monkeypatch.setattr(time_to_quality.sys, "executable", str(slow))
    with pytest.raises(SystemExit) as exit_:
        time_to_quality.main(["--stop_at", "1", "--dataset", "MNIST", f"--mnist_dir={tmp_path}",
                              f"--results={tmp_path / 'r.jsonl'}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("time_to_quality.py: error: the run stopped at 1 s, before its first "
                          "save (a generator is saved after each epoch")
    assert err.endswith("give --stop_at more seconds\n") and "KeyboardInterrupt" not in err
    assert not (tmp_path / "r.jsonl").exists()


def test_levers_patch_the_story_one_run_at_a_time_and_score_each(blobs, tmp_path):
    from conftest import run_script
    data = next(a for a in blobs[1] if a.startswith("--data_dir=")).split("=", 1)[1]
    small = ("--g_widths=(32,64) --d_widths=(64,32) --z_dim=8 --batch_size=32 --device=cpu "
             "--precision=fp32")
    # a stack, then flags: no patch carries over
    levers = ["no_spread+g_class_2", "critic1=--n_critic=1"]
    run = run_script("--lever", *levers, "--steps=12", "--dataset=MNIST", f"--data_dir={data}",
                     f"--flags={small}", "--n=1000", f"--work={tmp_path}",
                     f"--results={tmp_path / 'r.jsonl'}", f"--cache={blobs[1][1].split('=', 1)[1]}",
                     cwd=tmp_path, script="benchmarks/levers.py")
    assert run.returncode == 0, run.stderr[-2000:]
    points = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert ([(p["lever"], p["steps"]) for p in points]
            == [(name.split("=")[0], 12) for name in levers])
    assert all(p["fid"] >= 0 and p["wall_s"] > 0 for p in points)

    def load(name, file):
        return torch.load(tmp_path / f"{name}_s0_12" / file, weights_only=False)

    def adam_steps(name, opt):
        return int(load(name, "checkpoint.pt")[opt]["state"][0]["step"])

    head_inputs = {name: load(name, "discriminator.pth")["state_dict"]["head.weight"].shape[1]
                   for name in ("no_spread+g_class_2", "critic1")}
    # the story's D: + the batch's spread
    assert head_inputs == {"no_spread+g_class_2": 32, "critic1": 33}
    assert (adam_steps("critic1", "opt_g"), adam_steps("critic1", "opt_d")) == (12, 12)
    assert (adam_steps("no_spread+g_class_2", "opt_g"),
            adam_steps("no_spread+g_class_2", "opt_d")) == (6, 12)
    assert load("critic1", "checkpoint.pt")["config"]["n_critic"] == 1


def test_floor_times_the_products_the_loops_steps_make(monkeypatch, capsys):
    import floor
    for k in basic_gan.DEFAULTS:  # floor.py sets the constants, as basic_gan's command line does
        monkeypatch.setattr(basic_gan, k, getattr(basic_gan, k))
    small = ["--g_widths=(32,64)", "--d_widths=(64,32)", "--batch_size=16", "--precision=fp32",
             "--device=cpu"]
    # G's 3 layers and D's 3. Where only D learns: G forward 3, D forward 6 (real and fake), back 10
    # (3 weight and 2 input gradients each; none for the images): 19. Where G learns too, 11 more:
    # D forward 3 on the fakes, back 3 (input gradients only), G back 5 (none for the noise): 30.
    line, products, cycle = floor.main([*small, "--r1_gamma=0"], repeats=2)  # on the CPU, in fp32
    assert (products, cycle) == (19 + 30, 2) and "24.5 products" in line and "steps/s" in line
    _, products, cycle = floor.main(small, repeats=2)  # R1 on every 4th: its double backward
    assert cycle == 4 and products > 2 * (19 + 30)
    assert "fp32 on cpu" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--help"], None),
    (["--epoch=3"], "floor.py: error: unknown option '--epoch=3'; did you mean --epochs?"),
    (["--repeats=0"], "floor.py: error: --repeats=0: time at least one step"),
])
def test_floor_has_its_own_help_and_errors(capsys, args, message):
    import floor
    with pytest.raises(SystemExit) as exit_:
        floor.main(args)
    out, err = capsys.readouterr()
    if message is None:
        assert (exit_.value.code == 0 and "The floor under a training step" in out
                and "--repeats" in out)
        assert "Adam learning rate" not in out  # basic_gan's own help is not floor.py's
    else:
        assert exit_.value.code == 2 and message in err
