"""The GPU paths, tested where no GPU is: PyTorch's meta device raises when it meets a CPU tensor or
when a number is read from it, and the decisions are given the answers a GPU and its driver would
give (capability, arch list, CUDA's error)."""
import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import SMALL

# torch 2.14.1's CUDA 13.0 build
ROOT_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]


def a_gpu(monkeypatch, name, capability, archs=ROOT_ARCHS):
    """torch, a CUDA build of it, as it answers on a machine with this GPU."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: archs)


def no_usable_gpu(monkeypatch, error):
    """A CUDA build of torch on a machine whose CUDA fails to start with this error."""
    def init():
        raise RuntimeError(error)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "init", init)


def refusal(gan, capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        gan.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    return err


class Halt(Exception):
    pass


def all_tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from all_tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from all_tensors(v)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # meta: no values
@pytest.mark.parametrize("conditional", [False, True])
def test_a_resume_on_a_gpu_holds_every_tensor_there_and_reads_none_before_its_save(
        gan, tiny_data, tmp_path, monkeypatch, conditional):
    """A checkpoint loads on the CPU; resumed on a GPU, the losses since the last report stayed
    there, and the first report stacked them with the GPU's own. On meta, a few steps then run:
    every tensor meets only meta tensors, and nothing is read back until the save."""
    run = [*SMALL, f"--data_dir={tiny_data}", f"--out_dir={tmp_path}", "--info_step=5"]
    run += ["--conditional"] * conditional
    # reports at steps 2, 4 and 6: step 7's losses in the checkpoint
    gan.main([*run, "--max_steps=7"])
    monkeypatch.setattr(gan, "pick_device", lambda say=False: (torch.device("meta"), "fp32"))
    steps, seen = [], {}
    step = gan.train_step
    monkeypatch.setattr(gan, "train_step", lambda *a, **k: steps.append(1) or step(*a, **k))

    def first_read(run, step):  # instead of reading the losses: where everything is
        seen["run"] = {t.device.type for t in all_tensors(vars(run))}
        raise Halt
    monkeypatch.setattr(gan, "mean_losses", first_read)
    made = gan.make_models
    models = []
    monkeypatch.setattr(gan, "make_models", lambda *a: models.append(made(*a)) or models[-1])
    with pytest.raises(Halt):
        gan.main([*run, "--resume", "--max_steps=10"])  # a report at step 10
    assert len(steps) == 3 and seen["run"] == {"meta"}
    G, D, G_ema, opt_g, opt_d = models[0]
    held = [*G.state_dict().values(), *D.state_dict().values(), *G_ema.state_dict().values(),
            *all_tensors(opt_g.state_dict()["state"]), *all_tensors(opt_d.state_dict()["state"])]
    assert {t.device.type for t in held if t.dim()} == {"meta"}  # Adam's step counts: CPU numbers


def test_the_files_a_gpu_run_writes_load_on_a_machine_without_one(gan, tmp_path, monkeypatch):
    """generator.pth and checkpoint.pt held the GPU's tensors: a plain torch.load of them failed
    on a machine with no GPU. The run here is on meta; a copy from it to the CPU stands in for
    the GPU's download (zeros of its shape), and any tensor saved where it was is seen as meta."""
    saved, to = {}, torch.Tensor.to
    monkeypatch.setattr(gan, "atomic_save", lambda obj, path: saved.update({path.name: obj}))

    def download(t, *a, **k):
        if t.is_meta and torch.device(k.get("device", a and a[0])) == torch.device("cpu"):
            return torch.zeros(t.shape, dtype=t.dtype)
        return to(t, *a, **k)

    monkeypatch.setattr(torch.Tensor, "to", download)
    gan.out_dir, gan.data_dir = str(tmp_path), str(tmp_path)
    with torch.device("meta"):
        G, D = gan.Generator(8, (16,)), gan.Discriminator((16,))
        G_ema, opt_g = gan.make_ema(G), torch.optim.Adam(G.parameters())
        for p in G.parameters():  # Adam's state after a step
            opt_g.state[p] = {"step": torch.tensor(1.0, device="cpu"),
                              "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        run = SimpleNamespace(device=torch.device("meta"), recent=[{"G": torch.ones(())}],
                              fixed_noise=torch.randn(4, 8), fixed_labels=None, progress=[],
                              data={})
    gan.save_models(G, D, G_ema)
    gan.save_checkpoint(run, 3, G, D, G_ema, opt_g, None)
    devices = {name: {t.device.type for t in all_tensors(obj)} for name, obj in saved.items()}
    assert devices == {"generator.pth": {"cpu"}, "discriminator.pth": {"cpu"},
                       "checkpoint.pt": {"cpu"}}


@pytest.mark.parametrize("capability, archs, runs", [
    ((7, 5), ROOT_ARCHS, True),    # a T4
    ((8, 9), ROOT_ARCHS, True),    # an RTX 4090: sm_86 code runs on 8.6 to 8.9
    ((12, 1), ROOT_ARCHS, True),
    ((6, 0), ROOT_ARCHS, False),   # a P100
    ((7, 0), ROOT_ARCHS, False),   # a V100: sm_75 code needs 7.5
    ((8, 0), ["sm_86"], False),    # newer code does not run on an older minor
    ((13, 0), ROOT_ARCHS, False),
    ((13, 0), [*ROOT_ARCHS, "compute_120"], True),  # PTX: compiled for any later GPU when loaded
    ((9, 0), ["sm_90a"], True),
])
def test_a_gpu_runs_the_code_built_for_its_major_and_an_older_minor(gan, capability, archs, runs):
    assert gan.has_kernels(*capability, archs) is runs


def test_a_gpu_this_torch_has_no_kernels_for(gan, monkeypatch, capsys, tmp_path):
    """A P100 or V100 on the CUDA 13 build: is_available() is True, and the first kernel raised
    "no kernel image is available" as a traceback. auto trains on the CPU and says why; asked for
    by name, it is refused in one line that says what to install."""
    a_gpu(monkeypatch, "Tesla P100-PCIE-16GB", (6, 0))
    monkeypatch.chdir(tmp_path)
    assert gan.pick_device(say=True)[0] == torch.device("cpu")
    note = capsys.readouterr().out
    assert note.startswith("note: this torch has no kernels for the Tesla P100-PCIE-16GB (sm_60)")
    assert "Training on the CPU" in note
    err = refusal(gan, capsys, ["--device=cuda"])
    assert "no kernels for the Tesla P100-PCIE-16GB (sm_60), only for sm_75, sm_80" in err
    assert "--index-url https://download.pytorch.org/whl/cu126" in err and "--device=cpu" in err
    assert not any(tmp_path.iterdir())


def test_a_driver_too_old_for_this_torch_is_said_not_taken_for_no_gpu(gan, monkeypatch, capsys):
    """is_available() is False, with only a warning the first time: auto trained on the CPU without
    a word, and --device=cuda said "torch sees no CUDA GPU"."""
    no_usable_gpu(monkeypatch, "The NVIDIA driver on your system is too old (found version 12020). "
                               "Please update your GPU driver\nby downloading ...")
    gan.device = "auto"
    assert gan.pick_device(say=True)[0] == torch.device("cpu")
    note = capsys.readouterr().out
    assert ("cannot use the GPU: The NVIDIA driver on your system is too old "
            "(found version 12020)") in note
    err = refusal(gan, capsys, ["--device=cuda"])
    assert ("device 'cuda' was asked for, but torch" in err
            and "driver on your system is too old" in err)
    no_usable_gpu(monkeypatch, "Found no NVIDIA driver on your system. "
                               "Please check that you have ...")
    gan.device = "auto"
    assert gan.pick_device(say=True)[0] == torch.device("cpu") and capsys.readouterr().out == ""
    assert "torch sees no CUDA GPU; use --device=cpu" in refusal(gan, capsys, ["--device=cuda"])
    no_usable_gpu(monkeypatch, "No CUDA GPUs are available")  # CUDA_VISIBLE_DEVICES="": hidden
    gan.device = "auto"
    assert gan.pick_device(say=True)[0] == torch.device("cpu") and capsys.readouterr().out == ""


@pytest.mark.parametrize("archs, hip", [([], None), (["gfx90a", "gfx942"], "6.2")])
def test_a_gpu_whose_kernels_cannot_be_told_is_taken_at_its_word(gan, monkeypatch, archs, hip):
    """A torch built from source lists no archs; ROCm's list AMD's gfx names: neither is refused."""
    a_gpu(monkeypatch, "a GPU", (8, 0), archs)
    monkeypatch.setattr(torch.version, "hip", hip)
    monkeypatch.setattr(torch.version, "cuda", None if hip else "13.0")
    assert gan.cuda_problem() is None and gan.pick_device()[0] == torch.device("cuda")


def test_bf16_is_refused_on_a_gpu_that_only_emulates_it(gan, monkeypatch, capsys):
    a_gpu(monkeypatch, "Tesla T4", (7, 5))
    assert "precision 'bf16' on the Tesla T4 (compute capability 7.5) is emulated, and slow" in \
        refusal(gan, capsys, ["--device=cuda", "--precision=bf16"])
    gan.precision = "auto"
    assert gan.pick_device() == (torch.device("cuda"), "fp32")  # what auto picks there
    a_gpu(monkeypatch, "NVIDIA A100", (8, 0))
    gan.device, gan.precision = "cuda", "bf16"
    gan.check_config()  # native there: no refusal
    assert gan.pick_device() == (torch.device("cuda"), "bf16")


def test_a_resume_on_a_mac_replays_the_same_noise(gan, tmp_path, monkeypatch):
    """The MPS generator draws z there: its state is saved and restored as CUDA's is."""
    states = []
    monkeypatch.setattr(torch.mps, "get_rng_state",
                        lambda *a: torch.tensor([7, 7], dtype=torch.uint8))
    monkeypatch.setattr(torch.mps, "set_rng_state", lambda state, *a: states.append(state))
    gan.out_dir, gan.data_dir = str(tmp_path), str(tmp_path)
    run = SimpleNamespace(device=torch.device("mps"), step=3, run_name="r", recent=[],
                          fixed_noise=None, fixed_labels=None, progress=[], history=[], data={},
                          classes=[])
    gan.save_checkpoint(run, 3, None, None, None, None, None)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert checkpoint["device_rng"][0] == "mps" and checkpoint["device_rng"][1].tolist() == [7, 7]
    assert gan.start(run, checkpoint, None, None, None, None, None) == 3
    assert [s.tolist() for s in states] == [[7, 7]]
    run.device = torch.device("cpu")  # on another kind of device it goes on in that one's stream
    gan.start(run, checkpoint, None, None, None, None, None)
    assert len(states) == 1


def test_speed_and_floor_wait_for_the_device_they_time(monkeypatch):
    sys.path.insert(0, str(__import__("conftest").ROOT / "benchmarks"))
    import floor
    import speed
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize",
                        lambda device=None: waited.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: waited.append(("mps", None)))
    speed.sync(torch.device("cuda", 1))
    speed.sync(torch.device("mps"))
    speed.sync(torch.device("cpu"))
    assert waited == [("cuda", torch.device("cuda", 1)), ("mps", None)]
    waited.clear()
    assert floor.best_of(lambda: None, repeats=2, rounds=2, dev=torch.device("cuda", 1)) >= 0
    assert waited and set(waited) == {("cuda", torch.device("cuda", 1))}  # the timer waits too
    a_gpu(monkeypatch, "Tesla T4", (7, 5))
    assert floor.describe(torch.device("cuda", 0)) == "Tesla T4"
    assert speed.hardware(torch.device("cuda", 0)).startswith("Tesla T4")
