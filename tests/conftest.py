import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("MPLBACKEND", "Agg")  # headless, as on CI
# Test models are tiny: one thread each, so a test and the script it starts never fight over cores.
os.environ["OMP_NUM_THREADS"] = "1"

from idx import fake_digits, real_mnist_root, write_dataset  # noqa: E402

# Small models and batches: a step takes about a millisecond, so whole runs fit in a test. fp32 on
# every CPU: with --precision=auto, one with native bf16 would train in bf16 (see test_models).
SMALL = ["--g_widths=(32,64)", "--d_widths=(64,32)", "--z_dim=8", "--batch_size=16", "--device=cpu",
         "--precision=fp32"]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A folder holding the four IDX files (gzipped), 256 training images."""
    return write_dataset(tmp_path_factory.mktemp("tiny"), fake_digits(256), fake_digits(64, seed=1))


@pytest.fixture(scope="session")
def real_root(tmp_path_factory):
    """A torchvision MNIST root from ../shared's real test digits (train = the 10k tiled 6x)."""
    root = real_mnist_root(tmp_path_factory.mktemp("real"))
    if root is None:
        pytest.skip("../shared/data/MNIST/raw is absent")
    return root


@pytest.fixture
def gan(monkeypatch):
    """basic_gan with its constants restored after the test, since main() overrides them."""
    import basic_gan
    for k in basic_gan.DEFAULTS:
        monkeypatch.setattr(basic_gan, k, getattr(basic_gan, k))
    return basic_gan


def start_script(*args, cwd, script="basic_gan.py"):
    """Start a script of the repo (or a path) as a user would, from `cwd`."""
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=120):
    stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_script(*args, cwd, timeout=120, script="basic_gan.py"):
    return finish(start_script(*args, cwd=cwd, script=script), timeout)


def same_state(a, b):
    """Bit-identical nested state: dicts, lists and tensors."""
    import torch
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def run_all(cases, script=lambda cwd: "basic_gan.py"):
    """Run several (args, cwd) at once: most of each run is importing torch,
    which is one core's work."""
    procs = [start_script(*args, cwd=cwd, script=script(cwd)) for args, cwd in cases]
    return [finish(p) for p in procs]


def edited(**constants):
    """basic_gan.py as a learner leaves it after editing constants at the top of the file."""
    source = (ROOT / "basic_gan.py").read_text()
    for name, value in constants.items():
        text = value if isinstance(value, Code) else repr(value)
        source, count = re.subn(rf"^{name} = .*$", f"{name} = {text}  # edited", source, flags=re.M)
        assert count == 1, name
    return source


class Code(str):
    """A constant's value as the learner types it, e.g. Code("(256)"), not as repr() writes it."""
