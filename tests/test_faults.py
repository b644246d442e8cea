"""Faults a run meets on shared machines and laptops: a full disk, a hard kill at any moment, and
two runs started in one folder."""
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from conftest import SMALL, finish, run_script, same_state, start_script


def load(path):
    return torch.load(path, weights_only=True)


def error_lines(result):
    return [line.strip() for line in result.stderr.splitlines() if "error:" in line]


def test_a_failed_write_keeps_the_previous_file_and_says_so(gan, tmp_path, capsys):
    gan.out_dir = str(tmp_path)
    path = tmp_path / "checkpoint.pt"
    gan.atomic_save({"run": {"step": 7}}, path)
    (tmp_path / "checkpoint.pt.tmp").symlink_to("/dev/full")  # every write there: no space left
    with pytest.raises(SystemExit) as exit_:
        gan.atomic_save({"run": {"step": 8}}, path)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1
    assert f"could not write {path}: No space left on device. {path} (step 7) is intact" in err
    assert load(path) == {"run": {"step": 7}} and not (tmp_path / "checkpoint.pt.tmp").exists()


def test_a_failed_grid_ends_the_run_in_one_line(tiny_data, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "fake_step000005.png").symlink_to("/dev/full")  # the first report's grid
    result = run_script(*SMALL, "--info_step=5", f"--data_dir={tiny_data}", "--out_dir=out",
                        cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert error_lines(result) == [  # the progress bar shares stderr
        "basic_gan.py: error: could not write out/fake_step000005.png: No space left on device. "
        "There is no intact out/checkpoint.pt to resume from"]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MB filesystem, where one checkpoint of the small models fits and the next does not."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (it needs root)")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_ends_the_run_in_one_line_and_keeps_the_last_checkpoint(tiny_data, tiny_disk,
                                                                            tmp_path):
    result = run_script(*SMALL, "--info_step=1000", "--epochs=5", f"--data_dir={tiny_data}",
                        f"--out_dir={tiny_disk}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    line, = error_lines(result)
    assert f"could not write {tiny_disk}/" in line and "No space left on device" in line
    assert f"{tiny_disk}/checkpoint.pt (step 16) is intact" in line
    assert load(tiny_disk / "checkpoint.pt")["run"]["step"] == 16
    assert not list(tiny_disk.glob("*.tmp"))  # nothing half-written left to fill the disk further


def wait_until(condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.0002)  # not a busy loop: the runs it watches need the cores


def kill_soon(proc, out, rng, inside_a_save):
    """SIGKILL the run after a few whole checkpoint saves (so that each kill leaves something to
    resume, on fast machines and slow ones): inside the next save, or at a random moment of the
    epoch after. True where it died mid-save."""
    while "training on" not in (line := proc.stdout.readline()):
        if not line:  # it ended by itself
            assert proc.wait() == 0, proc.stderr.read()
            return False
    tmp = out / "checkpoint.pt.tmp"
    wait_until(lambda: not tmp.exists())  # what an earlier kill left is cleared first
    for _ in range(rng.randint(1, 3)):  # whole saves
        wait_until(tmp.exists)
        wait_until(lambda: not tmp.exists())
    if inside_a_save:
        wait_until(tmp.exists)
    else:
        time.sleep(rng.uniform(0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return tmp.exists()


def kill_and_resume(args, out, rng, inside_a_save, kills=3):
    """Start, SIGKILL, and go on as a user would, again and again; then let it finish. A kill meant
    for inside a save that a busy machine let land just after it counts as a kill, and is tried
    again (a few times at most), so the test is the same on idle and loaded machines."""

    def go_on():
        if (out / "checkpoint.pt").exists():
            return ["--resume", f"--out_dir={out}"]
        return [*args, f"--out_dir={out}"]

    died_mid_save = tries = 0
    while tries < kills or (inside_a_save and died_mid_save < kills and tries < kills + 5):
        tries += 1
        died_mid_save += kill_soon(start_script(*go_on(), cwd=out.parent), out, rng, inside_a_save)
        for name in ("generator.pth", "checkpoint.pt"):  # whatever is there is whole
            if (out / name).exists():
                load(out / name)
    result = run_script(*go_on(), cwd=out.parent)
    assert result.returncode == 0, result.stderr
    return died_mid_save


def test_hard_kills_at_any_moment_lose_nothing_saved(tiny_data, tmp_path):
    args = [*SMALL, "--info_step=1000", "--epochs=30", f"--data_dir={tiny_data}"]  # 480 steps
    whole_run = start_script(*args, "--out_dir=whole", cwd=tmp_path)
    with ThreadPoolExecutor(2) as pool:  # two runs killed three times each, side by side
        at_random = pool.submit(kill_and_resume, args, tmp_path / "random", random.Random(0), False)
        in_saves = pool.submit(kill_and_resume, args, tmp_path / "in_saves", random.Random(1), True)
        assert in_saves.result() == 3  # the kills timed to a save did land inside one
        at_random.result()
    assert finish(whole_run).returncode == 0
    whole = load(tmp_path / "whole" / "checkpoint.pt")
    for out in (tmp_path / "random", tmp_path / "in_saves"):
        resumed = load(out / "checkpoint.pt")
        for key in ("G", "D", "G_ema", "opt_g", "opt_d", "rng"):  # three kills later, the same run
            assert same_state(whole[key], resumed[key]), (out.name, key)
        assert resumed["run"]["step"] == 480 and not list(out.glob("*.tmp"))


def test_a_second_run_in_the_same_folder_is_refused_until_the_first_is_gone(gan, tiny_data,
                                                                            tmp_path, monkeypatch):
    args = [*SMALL, "--info_step=1000", "--epochs=1000", f"--data_dir={tiny_data}", "--out_dir=out"]
    first = start_script(*args, cwd=tmp_path)
    while "training on" not in first.stdout.readline():
        assert first.poll() is None, first.stderr.read()
    second = run_script(*args, cwd=tmp_path)
    assert second.returncode == 2 and second.stdout == "", second.stderr  # refused before any data
    assert second.stderr.strip() == (f"basic_gan.py: error: out is in use by another run (process "
                                     f"{first.pid}): let it finish, stop it, or set another "
                                     f"--out_dir")
    assert len(list((tmp_path / "out" / "runs").iterdir())) == 1  # only the first run's
    while not (tmp_path / "out" / "generator.pth").exists():
        assert first.poll() is None
    monkeypatch.chdir(tmp_path)
    gan.main(["--sample=4", "--out_dir=out"])  # it only reads the weights: it may run beside
    assert load(tmp_path / "out" / "samples.pt").shape == (4, 1, 28, 28)
    first.send_signal(signal.SIGKILL)
    first.wait()
    step = load(tmp_path / "out" / "checkpoint.pt")["run"]["step"]
    gan.main(["--resume", "--out_dir=out", f"--max_steps={step + 3}"])  # no lock left behind
    assert load(tmp_path / "out" / "checkpoint.pt")["run"]["step"] == step + 3


def test_the_folder_is_free_again_after_main_returns_or_fails(gan, tiny_data, tmp_path,
                                                              monkeypatch):
    gan.main([*SMALL, "--max_steps=2", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}"])
    real_step = gan.train_step
    monkeypatch.setattr(gan, "train_step", lambda *a, **k: {"D_real": torch.tensor(float("nan"))})
    go_on = ["--resume", f"--out_dir={tmp_path}", "--max_steps=4"]
    with pytest.raises(SystemExit):
        gan.main(go_on)  # fails inside the loop, holding the folder
    monkeypatch.setattr(gan, "train_step", real_step)
    G, _, _ = gan.main(go_on)  # as the next notebook cell would
    assert G is not None and load(tmp_path / "checkpoint.pt")["run"]["step"] == 4
