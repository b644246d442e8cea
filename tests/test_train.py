"""Whole runs, as a user starts them:
outputs, TensorBoard, --sample, --resume, signals and faults."""
import copy
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, SMALL, finish, run_script, same_state, start_script
from idx import fake_digits, write_dataset

RUN = [*SMALL, "--info_step=5", "--epochs=2"]  # 256 images / 16 = 16 steps an epoch
# SMALL pins the precision: with auto, a CPU with native bf16 would pick bf16, an AVX2 one fp32.
PRECISION = next(a.split("=")[1] for a in RUN if a.startswith("--precision="))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    """One finished 2-epoch run, shared by the tests that only read its outputs."""
    cwd = tmp_path_factory.mktemp("run")
    result = run_script(*RUN, f"--data_dir={tiny_data}", "--out_dir=out", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd / "out", result


def load(path):
    return torch.load(path, weights_only=True)


def test_a_run_prints_progress_and_writes_every_output(trained):
    out, result = trained
    # as pinned
    assert "training on CPU with" in result.stdout and f"in {PRECISION}" in result.stdout
    reports = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert [r.split(":")[0] for r in reports] == [f"step {s}" for s in (5, 10, 15, 20, 25, 30)]
    assert "G loss" in reports[0] and "D loss" in reports[0]
    names = {p.name for p in out.iterdir()}
    assert {"generator.pth", "discriminator.pth", "checkpoint.pt", "losses.png", "progress.png",
            "runs"} <= names
    assert ({f"fake_step{s:06d}.png" for s in (5, 30, 32)} <= names
            and "real_step000030.png" in names)
    assert not any(n.endswith(".tmp") for n in names)


def test_the_digits_forming_are_a_strip_and_a_moving_picture(trained):
    """progress.gif: the fixed noise's whole grid at each report, as the PyTorch DCGAN tutorial's
    animation; progress.png: the first 8 of it at up to 10 reports, top to bottom."""
    out, _ = trained
    gif = Image.open(out / "progress.gif")
    assert gif.n_frames == 6 and gif.info["loop"] == 0  # a frame a report, over and over
    assert gif.size == (242, 242)  # 8 x 8 digits of 28 pixels, 2 between them
    gif.seek(5)
    last = torch.frombuffer(bytearray(gif.convert("L").tobytes()), dtype=torch.uint8)
    assert last.float().std() > 10  # digits, not a blank frame
    assert Image.open(out / "progress.png").size == (242, 182)  # 6 rows of 8: one a report


def test_saved_models_rebuild_from_their_own_file(trained, gan):
    out, _ = trained
    g, d = load(out / "generator.pth"), load(out / "discriminator.pth")
    G = gan.Generator(g["config"]["z_dim"], g["config"]["g_widths"])
    G.load_state_dict(g["state_dict"])
    D = gan.Discriminator(d["config"]["d_widths"])
    D.load_state_dict(d["state_dict"])
    assert (G.eval()(torch.randn(3, 8)).shape == (3, 784)
            and D(torch.zeros(3, 784))[0].shape == (3, 1))
    measured = gan.settled(copy.deepcopy(G), g["config"]["seed"])  # its statistics: its output's
    assert all(torch.equal(a, b) for a, b in zip(measured.buffers(), G.buffers()))


def test_tensorboard_gets_losses_grids_and_hyperparameters(trained):
    out, _ = trained
    assert Image.open(out / "progress.png").size == (242, 182)  # 6 reports: 6 rows of 8
    runs = list((out / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("MNIST_seed0_")
    events = EventAccumulator(str(runs[0]), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("losses/G", "losses/D", "losses/D_real", "losses/D_fake", "losses/R1",
                "charts/D(x)", "charts/D(G(z))", "charts/lr", "charts/images_per_s"):
        assert [e.step for e in events.Scalars(tag)] == [5, 10, 15, 20, 25, 30]
    # D's loss is the game's: its BCE on real and on fake digits, and R1 is logged on its own

    def value(tag):
        return [e.value for e in events.Scalars(tag)]

    assert value("losses/D") == pytest.approx(
        [r + f for r, f in zip(value("losses/D_real"), value("losses/D_fake"))])
    assert (all(r1 > 0 for r1 in value("losses/R1"))
            and not any("class" in t for t in tags["scalars"]))
    lrs = [e.value for e in events.Scalars("charts/lr")]
    assert (lrs[0] == pytest.approx(6e-4)
            and lrs[-1] == pytest.approx(6e-4 * 3 / 16))  # falls over the last half
    fake, real = events.Images("images/fake"), events.Images("images/real")
    assert [e.step for e in fake] == [5, 10, 15, 20, 25, 30]
    assert (fake[0].width, fake[0].height) == (242, 242)  # 64 digits, 8 by 8, 2-pixel padding
    assert (real[0].width, real[0].height) == (242, 62)   # a batch of 16: 2 rows of 8
    assert "hyperparameters/text_summary" in tags["tensors"]


def test_sample_draws_digits_from_the_saved_generator(gan, trained, tmp_path, monkeypatch):
    out, _ = trained
    monkeypatch.chdir(tmp_path)
    gan.main(["--sample=16", f"--out_dir={out}"])
    samples = load(out / "samples.pt")
    assert samples.shape == (16, 1, 28, 28) and samples.dtype == torch.float32
    assert 0 <= samples.min() and samples.max() <= 1 and samples.std() > 0.01
    assert (out / "samples.png").is_file()
    assert Image.open(out / "interpolation.png").size == (302, 242)  # 8 lines of 10 steps
    assert not any(tmp_path.iterdir())


def test_resume_continues_the_same_run_bit_for_bit(trained, tiny_data, tmp_path):
    out, _ = trained
    args = [*SMALL, "--info_step=5", f"--data_dir={tiny_data}", "--out_dir=b"]
    # Stopped by max_steps, not --epochs=1: the lr schedule spans the planned epochs.
    assert run_script(*args, "--epochs=2", "--max_steps=16", cwd=tmp_path).returncode == 0
    # No flags repeated: the checkpoint restores them. max_steps is not restored, device may change.
    result = run_script("--resume", "--out_dir=b", "--device=cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming MNIST_seed0_" in result.stdout and "at step 16" in result.stdout
    whole, resumed = load(out / "checkpoint.pt"), load(tmp_path / "b" / "checkpoint.pt")
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "rng"):
        assert same_state(whole[key], resumed[key]), key
    for key in ("step", "history", "progress", "recent", "fixed_noise"):
        assert same_state(whole["run"][key], resumed["run"][key]), key
    # appended to the same TensorBoard run
    assert len(list((tmp_path / "b" / "runs").iterdir())) == 1


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_epoch_saves_and_resume_is_exact(tiny_data, tmp_path, sig, code):
    args = [*SMALL, "--info_step=50", "--epochs=12", f"--data_dir={tiny_data}"]  # 192 steps
    whole_run = (start_script(*args, "--out_dir=whole", cwd=tmp_path) if sig == signal.SIGINT
                 else None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "basic_gan.py"), *args, "--out_dir=my cut"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    while not proc.stdout.readline().startswith("step 50:"):  # mid-epoch 4: 50 = 3 x 16 + 2
        assert proc.poll() is None
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    command = stderr.split("Continue with: ")[1].strip()
    assert command == "python basic_gan.py --resume --out_dir='my cut'"  # quoted, and complete
    cut = load(tmp_path / "my cut" / "checkpoint.pt")
    assert 50 <= cut["run"]["step"] < 192  # stopped mid-run, most likely mid-epoch 4
    if sig == signal.SIGTERM:
        return  # the same save path; SIGINT below also proves the resume
    pasted = run_script(*shlex.split(command)[2:], cwd=tmp_path)  # the printed command, as it is
    assert pasted.returncode == 0, pasted.stderr
    assert "12 epochs of 16 steps" in pasted.stdout  # the plan came back from the checkpoint
    assert finish(whole_run).returncode == 0
    whole = load(tmp_path / "whole" / "checkpoint.pt")
    resumed = load(tmp_path / "my cut" / "checkpoint.pt")
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "rng"):
        assert same_state(whole[key], resumed[key]), key
    for key in ("step", "history", "progress", "recent"):
        assert same_state(whole["run"][key], resumed["run"][key]), key


@pytest.mark.parametrize("bad_from, message, saved", [
    # after the first epoch's checkpoint
    (20, "between steps 20 and 25 the loss is not finite", 16),
    (2, "between steps 0 and 5 the loss is not finite", None),  # before there is any
])
def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(gan, tiny_data, tmp_path, monkeypatch,
                                                             capsys, bad_from, message, saved):
    real_step, steps = gan.train_step, []

    def step_that_breaks(*args, **kwargs):
        losses = real_step(*args, **kwargs)
        steps.append(len(steps) + 1)
        return {k: v * float("nan") for k, v in losses.items()} if steps[-1] > bad_from else losses

    monkeypatch.setattr(gan, "train_step", step_that_breaks)
    with pytest.raises(SystemExit) as exit_:
        gan.main([*RUN, f"--data_dir={tiny_data}", f"--out_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and message in err
    if saved:  # the end of epoch 1, not the bad state
        assert (load(tmp_path / "checkpoint.pt")["run"]["step"] == saved
                and f"(step {saved}) is intact" in err)
    else:  # and it says so, rather than name a file that is not there
        assert f"There is no intact {tmp_path}/checkpoint.pt to resume from" in err
        assert not (tmp_path / "checkpoint.pt").exists()


def make_it_old(path):
    """A checkpoint as the version before (seed, epoch) data order wrote it:
    no format, a data RNG."""
    ckpt = load(path)
    del ckpt["format"]
    torch.save({**ckpt, "data_rng": torch.get_rng_state(), "epoch": 1}, path)


BAD_CHECKPOINTS = [  # (damage done to the checkpoint, flags of the resume, the one line it gets)
    (lambda p: p.write_bytes(b"garbage"), [],
     "checkpoint.pt is corrupt or not a basic_gan checkpoint"),
    (make_it_old, [],
     "checkpoint.pt was made by an older basic_gan: start a new run"),
    (lambda p: p.write_bytes(p.read_bytes()[:5000]), [],
     "checkpoint.pt is corrupt or not a basic_gan checkpoint"),
    (lambda p: None, ["--z_dim=16"],
     "was made with z_dim=8: resuming with --z_dim=16 would make another run"),
    (lambda p: None, ["--g_widths=(32,)"],
     "made with g_widths=(32, 64): resuming with --g_widths=(32,) would"),
    (lambda p: None, ["--seed=1"],
     "checkpoint.pt was made with seed=0: resuming with --seed=1 would make"),
    (lambda p: None, ["--dataset=FashionMNIST"],
     "made with dataset='MNIST': resuming with --dataset="),
    (lambda p: None, ["--lr=0.001"],
     "made with lr=0.0006: resuming with --lr=0.001 would make another run"),
]


@pytest.mark.parametrize("case", range(len(BAD_CHECKPOINTS)), ids=[
    "garbage", "old", "truncated", "z_dim", "g_widths", "seed", "dataset", "lr"])
def test_a_bad_checkpoint_is_refused_in_one_line(gan, trained, tmp_path, monkeypatch, capsys, case):
    damage, extra, message = BAD_CHECKPOINTS[case]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "checkpoint.pt").write_bytes((trained[0] / "checkpoint.pt").read_bytes())
    damage(tmp_path / "out" / "checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        gan.main(["--out_dir=out", "--resume", *extra])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["checkpoint.pt"]


def test_a_corrupt_generator_is_refused_by_sample(gan, tmp_path, capsys):
    (tmp_path / "generator.pth").write_bytes(b"\x00" * 100)
    with pytest.raises(SystemExit) as exit_:
        gan.main(["--sample=4", f"--out_dir={tmp_path}"])
    assert exit_.value.code == 2 and "generator.pth is corrupt" in capsys.readouterr().err


def test_bf16_path_runs_when_forced(gan, tiny_data, tmp_path):
    G, D, _ = gan.main([*SMALL, "--precision=bf16", "--max_steps=2", f"--data_dir={tiny_data}",
                        f"--out_dir={tmp_path}"])
    assert all(torch.isfinite(p).all() for p in G.parameters())


def test_real_digits_train(real_root, tmp_path, monkeypatch):
    """The default models on the real test digits (tiled to 60k): a short run trains and reports."""
    result = run_script("--device=cpu", f"--data_dir={real_root}", "--out_dir=out",
                        "--max_steps=60", "--info_step=30", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import basic_gan
    monkeypatch.setattr(basic_gan, "device", "cpu")
    _, picked = basic_gan.pick_device()  # what this machine should pick: bf16 or fp32
    assert (f"training on CPU with {torch.backends.cpu.get_cpu_capability()} in {picked}"
            in result.stdout)
    # 60k / 128, last batch dropped
    assert "469 steps" not in result.stdout and "468 steps" in result.stdout
    reports = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(reports) == 2
    d_real = float(reports[-1].split("D(x) ")[1].split(",")[0])
    assert 0.3 < d_real < 0.95  # D tells real from fake, but has not overpowered G


def copy_of(out, tmp_path):
    shutil.copytree(out, tmp_path / "run")
    return tmp_path / "run"


def snapshot(folder):
    """Each file's time of change; the lock is left out, since a refused run takes it first."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.name != ".lock"}


def test_a_finished_run_says_so_and_writes_nothing_then_trains_longer(
        gan, trained, tiny_data, tmp_path, monkeypatch, capsys):
    run = copy_of(trained[0], tmp_path)
    before = snapshot(run)
    monkeypatch.chdir(tmp_path)
    gan.main(["--resume", "--out_dir=run"])
    out = capsys.readouterr().out
    assert "run has finished its 2 epochs (32 steps)" in out
    assert "The lr comes back to where a 4-epoch schedule has it now and falls to 0 again" in out
    assert "python basic_gan.py --resume --out_dir=run --epochs=4" in out
    assert "saved" not in out and "resuming" not in out and snapshot(run) == before
    moved = shutil.copytree(tiny_data, tmp_path / "moved")  # the same data, in another place
    # the plan may grow
    gan.main(["--resume", "--out_dir=run", "--epochs=3", f"--data_dir={moved}"])
    assert "3 epochs of 16 steps" in capsys.readouterr().out
    assert load(run / "checkpoint.pt")["run"]["step"] == 48


def other_data(folder, images):
    write_dataset(folder, (images, torch.zeros(len(images))), (images[:10], torch.zeros(10)))
    return folder


OTHER_DATA = [
    (256, 5, "holds 256 MNIST images (crc32"),  # as many images, other pixels
    (48, 0, "holds 48 MNIST images"),            # fewer: once it hung
    (512, 0, "holds 512 MNIST images"),          # more: once it crashed in islice
]


@pytest.mark.parametrize("count, seed, message", OTHER_DATA)
def test_resuming_on_other_data_is_refused_in_one_line(gan, trained, tmp_path, monkeypatch,
                                                       capsys, count, seed, message):
    run = copy_of(trained[0], tmp_path)
    before = snapshot(run)
    data = other_data(tmp_path / "other", fake_digits(count, seed=seed)[0])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        # --epochs=3: so there is work to do
        gan.main(["--resume", "--out_dir=run", f"--data_dir={data}", "--epochs=3"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1, err
    assert "that run trained on: set --data_dir to those" in err and snapshot(run) == before


def test_images_per_s_counts_only_the_steps_since_the_resume(gan, tmp_path):
    gan.batch_size = 16
    losses = {name: torch.tensor(0.5) for name in ("D_real", "D_fake", "G", "D(x)", "D(G(z))")}
    run = SimpleNamespace(recent=[losses], history=[], progress=[], fixed_noise=torch.randn(4, 8),
                          fixed_labels=None,
                          timer=(time.perf_counter() - 1.0, 1000))  # resumed at 1000, 1 s ago
    gan.out_dir = str(tmp_path)
    with gan.SummaryWriter(tmp_path / "tb") as run.writer:
        gan.report(run, 1020, gan.Generator(8, (16,)), torch.zeros(4, 784), 1e-4)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    images_per_s = events.Scalars("charts/images_per_s")[0].value
    # 20 steps of 16 in a second or a bit more; not 1020 steps' worth
    assert 200 < images_per_s <= 320


def test_tilde_in_paths_is_the_home_folder(gan, tiny_data, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(tiny_data, home / "fm")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    gan.main([*SMALL, "--max_steps=2", "--data_dir=~/fm", "--out_dir=~/runs"])
    assert (home / "runs" / "generator.pth").is_file() and not (tmp_path / "~").exists()


def test_a_large_sample_is_drawn_in_chunks_with_a_preview_a_person_can_look_at(gan, trained,
                                                                              tmp_path, capsys):
    run = copy_of(trained[0], tmp_path)
    # no tensor for a notebook to echo
    assert gan.main(["--sample=20001", f"--out_dir={run}"]) is None
    assert load(run / "samples.pt").shape == (20001, 1, 28, 28)
    assert Image.open(run / "samples.png").size == (482, 482)  # the first 256: 16 x 16
    out = capsys.readouterr().out
    assert (f"wrote 20001 samples to {run}/samples.pt (62.7 MB) and {run}/samples/, "
            "the first 256") in out
    assert len(list((run / "samples").iterdir())) == 20001  # flat: this generator has no classes


def test_a_new_run_never_replaces_another_one(gan, trained, tiny_data, tmp_path, monkeypatch,
                                              capsys):
    """Running the script twice in one folder is the most natural thing a learner does."""
    run = copy_of(trained[0], tmp_path)

    def files():
        return {p.name: p.read_bytes() for p in run.iterdir()
                if p.is_file() and p.name != ".lock"}

    before = files()
    monkeypatch.chdir(tmp_path)
    for extra in ([], ["--sample=0"], ["--resume=False", "--epochs=1"]):
        with pytest.raises(SystemExit) as exit_:
            gan.main([*RUN, f"--data_dir={tiny_data}", "--out_dir=run", *extra])
        err = capsys.readouterr()
        assert exit_.value.code == 2 and err.out == "" and err.err.count("\n") == 1, err
        assert ("run holds a run (checkpoint.pt) that a new one would replace: go on with it with "
                "python basic_gan.py --resume --out_dir=run, or start the new one with "
                "--out_dir=run_2") in err.err
    assert files() == before  # the weights too
    (tmp_path / "run_2").mkdir()
    with pytest.raises(SystemExit):
        gan.main([*RUN, f"--data_dir={tiny_data}", "--out_dir=run"])
    assert "--out_dir=run_3" in capsys.readouterr().err  # a folder that is free
    gan.main([*RUN, f"--data_dir={tiny_data}", "--out_dir=run_3"])
    assert load(tmp_path / "run_3" / "checkpoint.pt")["run"]["step"] == 32


@pytest.mark.parametrize("args, reports", [
    (["--epochs=1"], [5, 10, 15]),                 # 16 steps, info_step 500: 3 reports, not none
    (["--epochs=40", "--batch_size=256"], [13, 26, 39]),  # 1 step an epoch, as in a small folder
    (["--epochs=2", "--info_step=16"], [16, 32]),  # 2 reports as asked: info_step holds
    (["--epochs=40", "--max_steps=12"], [4, 8, 12]),  # was none: the interval came from the epochs
    # fewer than 6: each step
    (["--epochs=40", "--max_steps=5", "--batch_size=256"], [1, 2, 3, 4, 5]),
])
def test_a_short_run_shows_a_few_reports(gan, tiny_data, tmp_path, capsys, args, reports):
    gan.main([*SMALL, f"--data_dir={tiny_data}", f"--out_dir={tmp_path}", *args])
    out = capsys.readouterr().out
    assert [int(line.split(":")[0][5:])
            for line in out.splitlines() if line.startswith("step ")] == reports
    assert f"a report every {reports[0]}" in out
    assert (tmp_path / "progress.png").is_file() and (tmp_path / "losses.png").is_file()


def test_a_sample_too_big_for_memory_is_refused_in_one_line(gan, trained, tmp_path, capsys):
    run = copy_of(trained[0], tmp_path)
    before = snapshot(run)
    with pytest.raises(SystemExit) as exit_:
        gan.main(["--sample=99999999999999", f"--out_dir={run}"])
    err = capsys.readouterr().err
    assert (exit_.value.code == 2 and err.count("\n") == 1
            and "99999999999999 images of 1 x 28 x 28 need" in err)
    assert "try --sample=" in err and snapshot(run) == before


@pytest.mark.parametrize("out_dir, message, code", [
    ("", "out_dir must be a folder, in quotes, got ''", 2),        # not the current folder
    ("/proc/x", "could not write /proc/x: No such file or directory", 1),
])
def test_odd_out_dirs_get_one_line(gan, tiny_data, tmp_path, monkeypatch, capsys, out_dir, message,
                                   code):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        gan.main([*SMALL, f"--data_dir={tiny_data}", f"--out_dir={out_dir}"])
    err = capsys.readouterr().err
    assert exit_.value.code == code and message in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())


def test_a_run_you_cannot_write_to_says_how_to_draw_from_it(gan, trained, tmp_path, monkeypatch,
                                                            capsys):
    # as a read-only folder would say
    monkeypatch.setattr(gan.os, "access", lambda path, mode: False)
    with pytest.raises(SystemExit):
        gan.main(["--sample=4", f"--out_dir={trained[0]}"])
    assert "copy its generator.pth to a folder you can write to" in capsys.readouterr().err


def test_a_report_averages_every_step_since_the_last_one_across_a_save(gan, tiny_data, tmp_path):
    """A save at an epoch's end checks the losses but leaves them to the next report."""
    # saves at 16, 18
    gan.main([*RUN, f"--data_dir={tiny_data}", f"--out_dir={tmp_path}", "--max_steps=18"])
    recent = load(tmp_path / "checkpoint.pt")["run"]["recent"]
    assert (len(recent) == 3  # 16, 17, 18
            and {"D_real", "D_fake", "G", "D(x)", "D(G(z))"} <= set(recent[0]))


def test_a_generator_from_any_save_draws_with_statistics_of_its_own_output(gan, trained, tmp_path):
    """An epoch's save before the last one (what a hard kill leaves) held G_ema's averaged BatchNorm
    statistics, the last save measured ones: --sample after a kill drew worse than it could."""
    run = copy_of(trained[0], tmp_path)
    checkpoint = load(run / "checkpoint.pt")
    config = checkpoint["config"]
    G_ema = gan.Generator(config["z_dim"], config["g_widths"])
    G_ema.load_state_dict(checkpoint["G_ema"])  # the average as it trains: its statistics averaged
    vars(gan).update({k: config[k] for k in gan.DEFAULTS}, out_dir=str(run))
    gan.save_models(G_ema, G_ema, None)  # what an epoch's save writes
    unsettled = load(run / "generator.pth")["state_dict"]
    measured = gan.settled(copy.deepcopy(G_ema), config["seed"])
    loaded = gan.load_generator(run / "generator.pth")
    assert not torch.equal(unsettled["net.1.running_mean"], measured.net[1].running_mean)
    assert all(torch.equal(a, b) for a, b in zip(loaded.buffers(), measured.buffers()))


def test_a_stop_on_the_last_step_ends_the_run_as_it_would(gan, tiny_data, tmp_path, monkeypatch,
                                                          capsys):
    """It printed a resume command that answered "has finished", and left no final grid,
    progress.png or losses.png, which no later command writes."""
    step = gan.train_step
    monkeypatch.setattr(gan, "train_step", lambda *a, **k: (step(*a, **k), gan.STOP.append(2))[0])
    gan.main([*RUN, "--epochs=1", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}",
              "--max_steps=1"])
    out, err = capsys.readouterr()
    assert "stopped" not in err and "Continue with" not in err
    assert ({"progress.png", "losses.png", "fake_step000001.png"}
            <= {p.name for p in tmp_path.iterdir()})
    assert load(tmp_path / "checkpoint.pt")["run"]["step"] == 1


def test_a_resume_past_the_length_asked_for_says_where_the_run_is(gan, tiny_data, tmp_path, capsys):
    """A run stopped at step 20 of 12 epochs (192 steps), resumed with --epochs=1 (16 steps), said
    it had "finished its 1 epoch (20 steps)" and offered --epochs=2, which is past too."""
    gan.main([*RUN, "--epochs=12", "--max_steps=20", f"--data_dir={tiny_data}",
              f"--out_dir={tmp_path}"])
    capsys.readouterr()
    gan.main(["--resume", "--epochs=1", f"--out_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert f"{tmp_path} is at step 20, past the 16 steps of 1 epoch: nothing to do. To go on: " \
           f"python basic_gan.py --resume --out_dir={tmp_path}\n" in out  # its own 12 epochs
    gan.main([*RUN, "--epochs=1", "--max_steps=20", f"--data_dir={tiny_data}",
              f"--out_dir={tmp_path / 'b'}"])
    gan.main(["--resume", f"--out_dir={tmp_path / 'b'}", "--epochs=1"])
    assert "finished its 1 epoch (16 steps)" in capsys.readouterr().out


def test_a_run_says_what_stops_it_and_what_it_learns(gan, tiny_data, tmp_path, capsys):
    """A run stopped by --max_steps looked finished; a resume with fewer epochs shortened it without
    a word; a conditional run never named the classes it found."""
    gan.main([*RUN, "--epochs=3", "--max_steps=7", "--conditional", f"--data_dir={tiny_data}",
              f"--out_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert "10 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9\n" in out
    assert "3 epochs of 16 steps, a report every 2, stopping at step 7 (max_steps)" in out
    assert f"stopped at step 7 of 48 (max_steps). To go on: python basic_gan.py --resume " \
           f"--out_dir={tmp_path}\n" in out
    gan.main(["--resume", "--epochs=1", f"--out_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert f"note: {tmp_path} was made for 3 epochs; it goes on for 1 epoch in all" in out
    assert "stopped at step" not in out and load(tmp_path / "checkpoint.pt")["run"]["step"] == 16


def test_g_learns_on_every_n_critic_th_step_at_n_critic_times_the_lr(gan, tiny_data, tmp_path):
    gan.main([*RUN, "--epochs=1", "--max_steps=5", "--lr=1e-3", f"--data_dir={tiny_data}",
              f"--out_dir={tmp_path}"])
    checkpoint = load(tmp_path / "checkpoint.pt")
    g, d = checkpoint["opt_g"], checkpoint["opt_d"]
    assert (g["param_groups"][0]["lr"], d["param_groups"][0]["lr"]) == (2e-3, 1e-3)  # n_critic 2
    assert (int(g["state"][0]["step"]), int(d["state"][0]["step"])) == (2, 5)  # steps 2 and 4
    line = gan.report_line(7, {"D_real": 0.6, "D_fake": 0.7, "D(x)": 0.5, "D(G(z))": 0.4}, 100)
    assert "G loss -, D(x) 0.50" in line  # a report whose steps had no G update
