"""The constants block and the command line generated from it."""
import gzip
import importlib.util
import math

import pytest
import torch

from conftest import SMALL, Code, edited, run_all
from idx import fake_digits, idx_bytes


def test_every_constant_is_an_option(gan):
    for name in ("epochs", "batch_size", "lr", "z_dim", "info_step", "device", "seed", "data_dir",
                 "out_dir", "max_steps", "dataset", "g_widths", "d_widths", "resume", "sample"):
        assert name in gan.DEFAULTS
    assert "Generator" not in gan.DEFAULTS and "DEFAULTS" not in gan.DEFAULTS
    assert not any(k.startswith("_") for k in gan.DEFAULTS)  # not __doc__ or __name__


@pytest.mark.parametrize("argv, expected", [
    (["--epochs=3", "--lr=1e-4"], {"epochs": 3, "lr": 1e-4}),
    (["--epochs", "3"], {"epochs": 3}),
    (["--lr=1"], {"lr": 1.0}),                       # an int where a float is expected is fine
    (["--resume"], {"resume": True}),               # a bare flag means True
    (["--resume=false"], {"resume": False}),
    (["--g_widths=(64,128)"], {"g_widths": (64, 128)}),
    (["--g_widths=[64]"], {"g_widths": (64,)}),
    (["--device=cpu", "--out_dir=runs/a b"], {"device": "cpu", "out_dir": "runs/a b"}),
    (["--data-dir=/x"], {"data_dir": "/x"}),       # dashes work like underscores
])
def test_parse_args(gan, argv, expected):
    assert gan.as_meant(gan.parse_args(argv)) == expected  # only what the command line sets


def test_each_main_call_starts_from_the_file_constants(gan, tiny_data, tmp_path):
    """In a notebook, a second main() must not keep the first call's overrides."""
    args = ["--g_widths=(32,)", "--d_widths=(32,)", "--batch_size=16", "--device=cpu",
            "--max_steps=1", "--info_step=1", f"--data_dir={tiny_data}"]
    G, _, _ = gan.main([*args, "--lr=1e-3", "--z_dim=16", f"--out_dir={tmp_path / 'a'}"])
    assert G.z_dim == 16 and gan.lr == 1e-3
    G, _, _ = gan.main([*args, f"--out_dir={tmp_path / 'b'}"])
    assert G.z_dim == gan.DEFAULTS["z_dim"] == 64 and gan.lr == gan.DEFAULTS["lr"] == 6e-4
    saved = torch.load(tmp_path / "b" / "generator.pth", weights_only=True)["config"]
    assert saved["lr"] == 6e-4 and saved["z_dim"] == 64


@pytest.mark.parametrize("argv, message", [
    (["--epoch=3"], "unknown option --epoch; did you mean --epochs?"),
    (["--epochs"], "--epochs needs a value"),
    (["epochs=3"], "unexpected argument 'epochs=3'"),
])
def test_parse_errors_are_one_line(gan, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        gan.parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 0}, "batch_size must be an int >= 2: BatchNorm needs two images, got 0"),
    ({"batch_size": 1}, "batch_size must be an int >= 2: BatchNorm needs two images, got 1"),
    ({"epochs": 0}, "epochs must be an int > 0"),
    ({"epochs": 2.5}, "epochs must be an int > 0, got 2.5"),  # as a file edit would write them
    ({"epochs": True}, "epochs must be an int > 0, got True"),
    ({"seed": 2**64}, "seed must be an int in [-2**63, 2**64)"),
    ({"seed": -2**63 - 1}, "seed must be an int in [-2**63, 2**64)"),
    ({"seed": None}, "seed must be an int in [-2**63, 2**64), torch's, got None"),
    ({"z_dim": -1}, "z_dim must be an int > 0"),
    ({"info_step": 0}, "info_step must be an int > 0"),
    ({"max_steps": -1}, "max_steps must be an int >= 0"),
    ({"g_widths": (64, 0)}, "g_widths must be a non-empty tuple of ints > 0, like (64, 128)"),
    ({"g_widths": 256}, "g_widths must be a non-empty tuple of ints > 0"),  # (256) in the file
    ({"g_widths": (64, 1.5)}, "g_widths must be a non-empty tuple of ints > 0"),
    ({"d_widths": ()}, "d_widths must be a non-empty tuple"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"lr": math.nan}, "lr must be a finite number"),
    ({"lr": math.inf}, "lr must be a finite number"),
    ({"lr": "fast"}, "lr must be a finite number > 0, got 'fast'"),
    ({"resume": "yes"}, "resume must be True or False, got 'yes'"),
    ({"out_dir": 5}, "out_dir must be a folder, in quotes, got 5"),
    ({"device": "tpu"}, "device must be one of auto, cpu, cuda, cuda:N"),
    # a cell after %run: device = torch.device("cuda")
    ({"device": torch.device("cuda")}, "device must be one of auto, cpu, cuda, cuda:N"),
    ({"device": None}, "device must be one of auto, cpu, cuda, cuda:N (N = 0, 1, ...), mps"),
    ({"device": "cuda:01"},
     "device must be one of auto, cpu, cuda, cuda:N (N = 0, 1, ...), mps, got 'cuda:01'"),
    ({"dataset": "CIFAR10"}, "dataset must be one of MNIST, FashionMNIST"),
    ({"precision": "fp16"}, "precision must be one of auto, fp32, bf16"),
    ({"ema_decay": 1.0}, "ema_decay must be a number in [0, 1)"),
    ({"lr_decay": 1.5}, "lr_decay must be a number in [0, 1]"),
    ({"lr_decay": -0.1}, "lr_decay must be a number in [0, 1]"),
    ({"channels": True}, "channels must be 1 (gray) or 3 (colour), got True"),
])
def test_impossible_values_are_refused(gan, capsys, overrides, message):
    for k, v in overrides.items():
        setattr(gan, k, v)
    with pytest.raises(SystemExit) as exit_:
        gan.check_config()
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_help_lists_constants_with_comments(gan, capsys):
    with pytest.raises(SystemExit) as exit_:
        gan.main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "python basic_gan.py --resume" in out  # the file's docstring
    for name, default in gan.DEFAULTS.items():  # each constant, its default and its comment
        line = next(line for line in out.splitlines() if line.strip().startswith(f"--{name} "))
        assert f"(default: {default!r})" in line
    assert "passes over the 60k images" in out
    assert "Adam learning rate: D's, and G's n_critic times it" in out
    assert "--resume [BOOL] " in out and "[]" not in out  # not an empty list as the value


BAD_INPUTS = [
    (["--epoch=1"], "did you mean --epochs?"),
    (["--lr=nan"], "lr must be a finite number > 0, got 'nan'"),
    (["--lr=1e999"], "lr must be a finite number"),
    (["--batch_size=-5"], "batch_size must be an int >= 2: BatchNorm needs two images, got -5"),
    (["--epochs=3.5"], "epochs must be an int > 0, got 3.5"),
    (["--resume=yes"], "resume must be True or False, got 'yes'"),
    (["--g_widths=(64,1.5)"], "g_widths must be a non-empty tuple of ints > 0"),
    (["--dataset=KMNIST"], "dataset must be one of"),
    (["--data_dir=afile"], "data_dir 'afile' is a file"),
    (["--out_dir=afile/out"], "out_dir 'afile/out' is not writable"),
    (["--resume"], "no checkpoint.pt in out"),
    (["--sample=4"], "no generator.pth in out"),
    (["--device=mps"], "this machine has no MPS"),
    (["--data_dir=empty"], "MNIST is not in empty/MNIST/raw and could not be downloaded"),
    (["--data_dir=bad_magic"], "train-images-idx3-ubyte is not an IDX file: magic number 1234"),
    (["--data_dir=truncated"],
     "train-images-idx3-ubyte.gz is truncated or corrupt: 1016 bytes, its header says 7856"),
]


def make_bad_inputs(folder):
    (folder / "afile").write_text("not a folder")
    (folder / "empty").mkdir()
    images = idx_bytes(fake_digits(10)[0])
    (folder / "bad_magic").mkdir()
    magic = (1234).to_bytes(4, "big")
    (folder / "bad_magic" / "train-images-idx3-ubyte").write_bytes(magic + images[4:])
    (folder / "truncated").mkdir()
    (folder / "truncated" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images[:1016]))


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", range(len(BAD_INPUTS)), ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_touches_nothing(gan, tiny_data, tmp_path, monkeypatch,
                                                             capsys, case):
    # offline even where there is a network: nothing listens there
    for proxy in ("http_proxy", "https_proxy"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    make_bad_inputs(tmp_path)
    before = tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        # the case's arguments last: later wins
        gan.main([f"--data_dir={tiny_data}", "--out_dir=out", *SMALL[:2], *BAD_INPUTS[case][0]])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and BAD_INPUTS[case][1] in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert tree(tmp_path) == before  # out_dir not even created, data folders untouched


def test_bad_input_from_a_real_command_line(tiny_data, tmp_path):
    """Two rows of the table as a user types them: exit 2, one line on stderr, nothing written."""
    make_bad_inputs(tmp_path)
    before = tree(tmp_path)
    cases = [(["--epoch=1"], "did you mean --epochs?"),
             (["--data_dir=truncated"], "is truncated or corrupt")]
    results = run_all([([f"--data_dir={tiny_data}", "--out_dir=out", *args], tmp_path)
                       for args, _ in cases])
    for result, (_, message) in zip(results, cases):
        assert (result.returncode == 2 and message in result.stderr
                and result.stderr.count("\n") == 1)
    assert tree(tmp_path) == before


def test_cuda_asked_for_without_a_gpu(gan, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without one
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        gan.main(["--device=cuda"])
    assert exit_.value.code == 2 and "torch sees no CUDA GPU" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


FILE_EDITS = [  # (constants as typed into the file, the one line it gets, or None where it trains)
    ({"g_widths": Code("(256)")},
     "g_widths must be a non-empty tuple of ints > 0, like (64, 128), got 256"),
    ({"epochs": Code("2.5")}, "epochs must be an int > 0, got 2.5"),
    ({"seed": Code("None")}, "seed must be an int in [-2**63, 2**64), torch's, got None"),
    ({"lr": Code("'4e-4'")}, "lr must be a finite number > 0, got '4e-4'"),
    ({"g_widths": Code("[32, 64]")}, None),  # a list where a tuple is meant
    ({"out_dir": "~/gan_runs"}, None),        # ~ is the home folder
    ({"epochs": Code("2\nepoch = 3")},  # a dead option, not accepted in silence
     "epoch, set in the constants cell, is none of basic_gan's constants: did you mean epochs?"),
    ({"data_dir": Code("Path('nowhere')")}, None),  # a Path, and --data_dir on the command line
]


def load_file(path, name):
    """A file run as a module of its own in this process, as %run runs it: each run here is a few
    steps, and starting a fresh python (importing torch) would be nearly all of its time."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_constants_edited_in_the_file_are_checked_like_the_command_line(tiny_data, tmp_path, capsys,
                                                                        monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for i, (constants, message) in enumerate(FILE_EDITS):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "basic_gan.py").write_text(edited(**{"out_dir": "out", **constants}))
        monkeypatch.chdir(tmp_path / str(i))
        edited_gan = load_file(tmp_path / str(i) / "basic_gan.py", f"edited_basic_gan_{i}")
        args = ["--max_steps=2", "--d_widths=(32,)", "--z_dim=8", "--batch_size=16", "--device=cpu",
                f"--data_dir={tiny_data}",
                *([] if "g_widths" in constants else ["--g_widths=(32,)"])]
        if message:
            capsys.readouterr()  # not the bars of the runs before
            with pytest.raises(SystemExit) as exit_:
                edited_gan.main(args)
            err = capsys.readouterr().err
            assert exit_.value.code == 2 and err == f"basic_gan.py: error: {message}\n", err
        else:
            edited_gan.main(args)  # trains
    listed = run_all([(["--sample=4", "--out_dir=out"], tmp_path / "4"),
                      (["--help"], tmp_path / "4")],
                     script=lambda cwd: cwd / "basic_gan.py")  # and the file as a user runs it
    assert listed[0].returncode == 0 and "--g_widths " in listed[1].stdout  # still an option
    assert (home / "gan_runs" / "generator.pth").is_file() and not (tmp_path / "5" / "~").exists()
