"""basic_gan.py: a GAN that learns to draw MNIST digits, in one file.

    python basic_gan.py                      train with the constants below
    python basic_gan.py --epochs=3 --lr=1e-4 override any constant
    python basic_gan.py --sample=64          draw digits (and an interpolation) from outputs/generator.pth
    python basic_gan.py --resume             continue from outputs/checkpoint.pt
    python basic_gan.py --help               list the constants

Read it top to bottom: constants, show(), data, models, one training step, the loop, saving.
"""
import ast
import difflib
import gzip
import itertools
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.optim as optim
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from torch.utils.tensorboard import SummaryWriter
from torchvision import datasets
from torchvision.utils import make_grid, save_image
import matplotlib
import matplotlib.pyplot as plt
from tqdm.auto import tqdm

# ---- hyperparameters: edit these, or override them: python basic_gan.py --name=value ----
epochs = 32                      # passes over the 60k training images (7 to 9.5 min on a 2-core AVX2 CPU)
batch_size = 128                 # images per step
lr = 2e-4                        # Adam learning rate, for G and D
lr_decay = 0.5                   # over this last fraction of training, lr falls linearly to 0; 0 = constant lr
beta1 = 0.0                      # Adam beta1; 0 = no momentum, so each net answers the other's latest move
z_dim = 64                       # length of the noise vector G draws from
g_widths = (128, 256, 512, 1024)  # hidden layer widths of the Generator
d_widths = (512, 256, 128)       # hidden layer widths of the Discriminator
r1_gamma = 1.0                   # R1 penalty on D's gradient at real digits; 0 = off
r1_every = 4                     # apply R1 every this many steps (scaled up to match)
ema_decay = 0.9999               # sample from a running average of G's weights (see ema_update); 0 = off
info_step = 500                  # print losses and show grids every this many steps
device = "auto"                  # auto (cuda, then mps, then cpu), cpu, cuda, mps
precision = "auto"               # auto (bf16 only where the hardware has it), fp32, bf16
seed = 0                         # seed for weights, noise and data order
dataset = "MNIST"                # MNIST or FashionMNIST
data_dir = "data"                # where the dataset is (or is downloaded to)
out_dir = "outputs"              # grids, weights, checkpoint and TensorBoard runs
max_steps = 0                    # stop after this many steps (the lr schedule still spans epochs); 0 = no limit
resume = False                   # continue from out_dir/checkpoint.pt
sample = 0                       # >0: train nothing, draw this many digits from out_dir/generator.pth

# Every constant above can be overridden from the command line (see parse_args at the bottom).
CONFIG_KEYS = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple))]
ARCH_KEYS = ("z_dim", "g_widths", "d_widths")  # what a saved model needs to be rebuilt


def fail(message, code=2):
    """Stop with one clear line instead of a traceback."""
    print(f"basic_gan.py: error: {message}", file=sys.stderr)
    raise SystemExit(code)


# ---- show(): one image grid, inline in Jupyter/VS Code, a window on a desktop, a PNG when headless ----
def show(images, title, step=0):
    grid = make_grid(images.detach().float().cpu().view(-1, 1, 28, 28), nrow=8, normalize=True, value_range=(-1, 1))
    backend = matplotlib.get_backend().lower()
    window = "inline" not in backend and backend not in ("agg", "pdf", "ps", "svg", "cairo", "template")
    fig = plt.figure(title if window else None, figsize=(4, 4))  # a desktop reuses one window per title
    fig.clf()
    plt.imshow(grid.permute(1, 2, 0).numpy())
    plt.title(f"{title}, step {step}")
    plt.axis("off")
    if window:
        plt.pause(0.001)  # draw without blocking training
        return
    if "inline" in backend:
        plt.show()
    else:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(out_dir) / f"{title}_step{step:06d}.png", bbox_inches="tight")
    plt.close(fig)


# ---- data: decoded once into one uint8 tensor, then served a whole batch per index ----
IDX_NAMES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}


def read_idx(path):
    """One IDX file (.gz or not) as a uint8 tensor: magic 2049 (labels) or 2051 (images), sizes, bytes."""
    try:
        with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        fail(f"{path} is unreadable or corrupt ({e})")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (2049, 2051):
        fail(f"{path} is not an IDX file: magic number {magic}, expected 2049 (labels) or 2051 (images)")
    ndim = magic - 2048
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + math.prod(shape)
    if len(raw) != expected:
        fail(f"{path} is truncated or corrupt: {len(raw)} bytes, its header says {expected}")
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=4 + 4 * ndim).view(shape)


def find_idx(folder, split="train", kind="images"):
    """The IDX file of one split in a folder that holds the files directly, or None."""
    name = IDX_NAMES[split].replace("images-idx3", "labels-idx1") if kind == "labels" else IDX_NAMES[split]
    return next((p for p in (Path(folder) / name, Path(folder) / f"{name}.gz") if p.is_file()), None)


def load_digits(split="train"):
    """(images, labels) of one split as uint8 tensors, from data_dir or torchvision's download."""
    if find_idx(data_dir, split):  # a folder holding the IDX files by hand, e.g. /usr/share/datasets/fashion-mnist
        labels = find_idx(data_dir, split, "labels")
        return read_idx(find_idx(data_dir, split)), read_idx(labels) if labels else None
    raw = Path(data_dir) / dataset / "raw"
    made = [d for d in (Path(data_dir), raw.parent, raw) if not d.exists()]
    try:  # torchvision's own loader: mirrors, md5 checks, parsing
        ds = getattr(datasets, dataset)(data_dir, train=split == "train", download=True)
    except Exception as e:
        for d in reversed(made):  # leave no empty folders behind
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        reason = str(e).strip().splitlines()[-1][:120] if str(e).strip() else type(e).__name__
        fail(f"{dataset} is not in {raw} and could not be downloaded ({reason}). Put train-images-idx3-ubyte.gz, "
             f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in {raw}/, "
             f"or pass --data_dir=A_FOLDER_HOLDING_THEM")
    return ds.data, ds.targets


def make_dataloader(dev, generator):
    images, _ = load_digits("train")
    images = images.to(dev)  # 47 MB as uint8; on a GPU it stays there, so no copy per step
    # Each index the sampler yields is a whole batch: one tensor gather per step, no per-image PIL work.
    batches = BatchSampler(RandomSampler(range(len(images)), generator=generator), batch_size, drop_last=True)
    return DataLoader(images, sampler=batches, batch_size=None, generator=generator)


def to_model_range(batch):
    """uint8 pixels in [0, 255] to flat float images in [-1, 1], the range of G's tanh."""
    return batch.flatten(1).float().div(127.5).sub(1)


# ---- models: the seed course's MLPs ----
class Generator(nn.Module):
    def __init__(self, z_dim, widths):
        super().__init__()
        self.z_dim = z_dim
        layers, width_in = [], z_dim
        for width in widths:
            layers += [nn.Linear(width_in, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            width_in = width
        self.net = nn.Sequential(*layers, nn.Linear(width_in, 28 * 28), nn.Tanh())

    def forward(self, z):
        return self.net(z)


class Discriminator(nn.Module):
    def __init__(self, widths):
        super().__init__()
        layers, width_in = [], 28 * 28
        for width in widths:
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(0.2, inplace=True)]
            width_in = width
        self.net = nn.Sequential(*layers, nn.Linear(width_in, 1))  # a logit: BCEWithLogitsLoss adds the sigmoid

    def forward(self, x):
        return self.net(x)


@torch.no_grad()
def ema_update(ema_tensors, tensors, num_averaged):
    """Move the average towards G. It spans about the last quarter of the steps so far (up to
    ema_decay), since a fixed 0.999 lags far behind a G that is still changing fast."""
    decay = torch.clamp((1 + num_averaged) / (5 + num_averaged), max=ema_decay)
    if ema_tensors[0].is_floating_point():  # AveragedModel passes one dtype at a time
        torch._foreach_lerp_(ema_tensors, tensors, 1 - decay)  # one call for all of G's weights
    else:  # BatchNorm's step counters are copied
        torch._foreach_copy_(ema_tensors, tensors)


def make_ema(G):
    # use_buffers: BatchNorm's running statistics are averaged too, so the average samples in eval mode.
    return AveragedModel(G, multi_avg_fn=ema_update, use_buffers=True).requires_grad_(False)


# ---- one training step: D learns real from fake, then G learns to fool D ----
criterion = nn.BCEWithLogitsLoss()


def r1_penalty(real, real_logits):
    # R1 (Mescheder et al. 2018): a D that is flat around real digits cannot push G into one mode.
    grad, = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return r1_gamma / 2 * grad.square().sum(1).mean()


def train_step(G, D, G_ema, opt_g, opt_d, real, step, autocast):
    z = torch.randn(len(real), z_dim, device=real.device)
    use_r1 = r1_gamma > 0 and step % r1_every == 0
    real.requires_grad_(use_r1)
    with autocast():
        fake = G(z)  # one G forward serves both steps: detached for D, attached for G
        real_logits, fake_logits = D(real), D(fake.detach())
        d_loss = criterion(real_logits, torch.ones_like(real_logits)) + criterion(fake_logits, torch.zeros_like(fake_logits))
    if use_r1:  # lazy: every r1_every steps, scaled up so the average pull is the same
        d_loss = d_loss + r1_every * r1_penalty(real, real_logits.float())
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    D.requires_grad_(False)  # G's step needs gradients through D, not for D's weights
    with autocast():
        g_logits = D(fake)
        g_loss = criterion(g_logits, torch.ones_like(g_logits))  # non-saturating: maximize log D(G(z))
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    D.requires_grad_(True)
    if G_ema is not None:
        G_ema.update_parameters(G)
    return torch.stack([d_loss.detach(), g_loss.detach(), real_logits.detach().sigmoid().mean(),
                        fake_logits.detach().sigmoid().mean()]).float()


def lr_at(step, total_steps):
    """lr, constant at first, then falling linearly to 0 over the last lr_decay of training, so G settles."""
    steps_left = total_steps - step
    return lr * min(1.0, steps_left / (lr_decay * total_steps)) if lr_decay > 0 else lr


def set_lr(optimizers, value):
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = value


# ---- the setup the loop needs: device, precision, models, optimizers ----
def pick_device():
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
    return torch.device(device)


def pick_precision(dev):
    """bf16 only where the hardware does it natively: on an AVX2-only CPU a bf16 step is ~25x slower."""
    if precision != "auto":
        return precision
    native_cpu_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if dev.type == "cpu" and native_cpu_bf16 else "fp32"


def build(dev):
    G, D = Generator(z_dim, g_widths).to(dev), Discriminator(d_widths).to(dev)
    G_ema = make_ema(G) if ema_decay > 0 else None
    fused = dev.type in ("cpu", "cuda")  # one kernel for all of Adam's math: 1.2x a whole CPU step, measured
    opt_g = optim.Adam(G.parameters(), lr=lr, betas=(beta1, 0.999), fused=fused)
    opt_d = optim.Adam(D.parameters(), lr=lr, betas=(beta1, 0.999), fused=fused)
    return G, D, G_ema, opt_g, opt_d


def config():
    return {k: globals()[k] for k in CONFIG_KEYS}


# ---- saving: every write goes to a temp file first, so a kill mid-save keeps the old file ----
def atomic_save(obj, path):
    tmp = Path(f"{path}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load(path, what):
    if not Path(path).is_file():
        fail(f"no {what} at {path}: train first, or point --out_dir at a finished run")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        fail(f"{path} is corrupt or not a basic_gan {what} ({type(e).__name__}); delete it or set --out_dir")


def check_same_arch(saved, path):
    for k in ARCH_KEYS + ("batch_size",):
        if k in saved and saved[k] != globals()[k]:
            fail(f"{path} was made with {k} {saved[k]}, this run has {k} {globals()[k]}: use the same {k} or another --out_dir")


def save_models(G, D, G_ema):
    # The generator file holds the averaged weights: they draw the better digits.
    best_g = G_ema.module if G_ema is not None else G
    atomic_save({"state_dict": best_g.state_dict(), "config": config()}, Path(out_dir) / "generator.pth")
    atomic_save({"state_dict": D.state_dict(), "config": config()}, Path(out_dir) / "discriminator.pth")


def save_checkpoint(models, opts, run):
    G, D, G_ema = models
    atomic_save({"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict() if G_ema else None,
                 "opt_g": opts[0].state_dict(), "opt_d": opts[1].state_dict(), "config": config(),
                 "rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all(), **run},
                Path(out_dir) / "checkpoint.pt")


def restore_checkpoint(models, opts, dev):
    path = Path(out_dir) / "checkpoint.pt"
    ckpt = load(path, "checkpoint")
    check_same_arch(ckpt["config"], path)
    G, D, G_ema = models
    try:
        G.load_state_dict(ckpt["G"]), D.load_state_dict(ckpt["D"])
        if G_ema is not None and ckpt["G_ema"] is not None:
            G_ema.load_state_dict(ckpt["G_ema"])
        opts[0].load_state_dict(ckpt["opt_g"]), opts[1].load_state_dict(ckpt["opt_d"])
    except (RuntimeError, KeyError, ValueError) as e:
        fail(f"{path} does not fit this run's models ({str(e).splitlines()[0]})")
    torch.set_rng_state(ckpt["rng"])
    if dev.type == "cuda" and ckpt["cuda_rng"]:
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
    run = {k: ckpt[k] for k in ("step", "epoch", "data_rng", "run_name", "history", "progress", "last_report")}
    return {**run, "fixed_noise": ckpt["fixed_noise"].to(dev), "sums": ckpt["sums"].to(dev)}


# ---- the training loop ----
STOP = []  # the SIGINT/SIGTERM handler only records the signal; the loop stops between two steps


def on_signal(signum, frame):
    STOP.append(signum)


def describe(dev):
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU with {torch.backends.cpu.get_cpu_capability()}" if dev.type == "cpu" else dev.type


def train():
    dev = pick_device()
    prec = pick_precision(dev)
    torch.manual_seed(seed)
    torch.set_float32_matmul_precision("high")  # TF32 on GPUs that have it; no effect on CPU
    data_rng = torch.Generator().manual_seed(seed)  # the data order alone, so a resume can replay it
    loader = make_dataloader(dev, data_rng)
    G, D, G_ema, opt_g, opt_d = build(dev)
    autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16")
    run = {"step": 0, "epoch": 0, "data_rng": data_rng.get_state(), "history": [], "progress": [],
           "sums": torch.zeros(4, device=dev), "last_report": 0,  # loss sums since the last report
           "fixed_noise": torch.randn(64, z_dim, device=dev),  # the same noise every grid, to watch progress
           "run_name": f"{dataset}_seed{seed}_{time.strftime('%Y%m%d-%H%M%S')}"}
    if resume:
        run.update(restore_checkpoint((G, D, G_ema), (opt_g, opt_d), dev))
        print(f"resuming {run['run_name']} at epoch {run['epoch'] + 1}, step {run['step']}")
    total_steps = epochs * len(loader)  # what the lr schedule spans; max_steps stops early within it
    print(f"training on {describe(dev)} in {prec}: {epochs} epochs of {len(loader)} steps")
    Path(out_dir).mkdir(parents=True, exist_ok=True)  # only now: bad input above leaves no trace
    writer = SummaryWriter(Path(out_dir) / "runs" / run["run_name"])  # a resumed run appends to its own
    if run["step"] == 0:
        writer.add_text("hyperparameters", "|name|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in config().items()))

    def checkpoint():
        save_checkpoint((G, D, G_ema), (opt_g, opt_d), run)
        save_models(G, D, G_ema)

    STOP.clear()
    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        tic = time.perf_counter()
        while run["epoch"] < epochs and not (max_steps and run["step"] >= max_steps):
            for batch in (bar := epoch_batches(loader, data_rng, run)):
                run["lr"] = lr_at(run["step"], total_steps)
                set_lr((opt_g, opt_d), run["lr"])
                losses = train_step(G, D, G_ema, opt_g, opt_d, to_model_range(batch), run["step"], autocast)
                run["step"] += 1
                d_loss, g_loss = losses[:2].tolist()  # the one host sync per step: for the bar, and to stop on NaN
                if not math.isfinite(d_loss + g_loss):  # checked before any save, so no bad state is kept
                    fail(f"step {run['step']}: the loss is not finite (D {d_loss:.4g}, G {g_loss:.4g}); stopped. "
                         f"The last good checkpoint is {Path(out_dir) / 'checkpoint.pt'}", code=1)
                bar.set_postfix(D=f"{d_loss:.3f}", G=f"{g_loss:.3f}", refresh=False)
                run["sums"] += losses
                if run["step"] % info_step == 0:
                    report(run, time.perf_counter() - tic, writer, G_ema or G, batch)
                    tic = time.perf_counter()
                if STOP or (max_steps and run["step"] >= max_steps):
                    break
            bar.close()
            if run["step"] == (run["epoch"] + 1) * len(loader):  # the epoch ran to its end
                next(bar.iterable, None)  # after a stop on its last step: the sampler's RNG ends as a full epoch's does
                run["epoch"] += 1
                run["data_rng"] = data_rng.get_state()
            checkpoint()
            writer.flush()
            if STOP:
                print(f"\nstopped at step {run['step']}; saved {Path(out_dir) / 'checkpoint.pt'}. "
                      f"Continue with: python basic_gan.py --resume --out_dir={out_dir}", file=sys.stderr)
                raise SystemExit(128 + STOP[0])  # 130 for Ctrl-C, 143 for SIGTERM
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        writer.close()
    finish(run, G_ema or G)
    return G, D, G_ema


def epoch_batches(loader, data_rng, run):
    """This epoch's batches in the order the saved data RNG state gives; a resumed epoch skips what it did."""
    data_rng.set_state(run["data_rng"])
    done = run["step"] - run["epoch"] * len(loader)
    return tqdm(itertools.islice(loader, done, None), desc=f"epoch {run['epoch'] + 1}/{epochs}",
                initial=done, total=len(loader), leave=False)


def report(run, seconds, writer, G, real_batch):
    """Every info_step: mean losses since the last report, the grids, and TensorBoard."""
    step, steps = run["step"], run["step"] - run["last_report"]
    d_loss, g_loss, d_real, d_fake = (run["sums"] / steps).tolist()
    run["sums"].zero_()
    run["last_report"] = step
    run["history"].append((step, g_loss, d_loss))
    images_per_s = steps * batch_size / seconds
    tqdm.write(f"step {step}: G loss {g_loss:.4f}, D loss {d_loss:.4f}, D(x) {d_real:.2f}, D(G(z)) {d_fake:.2f}, {images_per_s:.0f} img/s")
    for tag, value in [("losses/g", g_loss), ("losses/d", d_loss), ("charts/d_real", d_real),
                       ("charts/d_fake", d_fake), ("charts/lr", run["lr"]), ("charts/images_per_s", images_per_s)]:
        writer.add_scalar(tag, value, step)
    fake = generate(G, run["fixed_noise"])
    run["progress"].append(fake[:8].cpu())  # a row for the progress strip at the end
    for tag, images in (("fake", fake), ("real", to_model_range(real_batch[:64]))):
        show(images, tag, step)
        writer.add_image(f"images/{tag}", make_grid(images.view(-1, 1, 28, 28), normalize=True, value_range=(-1, 1)), step)


@torch.no_grad()
def generate(G, noise):
    was_training = G.training
    G.eval()  # BatchNorm's running statistics, so a digit does not depend on the rest of its batch
    images = G(noise).float()
    G.train(was_training)
    return images


def finish(run, G):
    """The end of training: a last grid, the digits forming row by row, and the loss curve."""
    show(generate(G, run["fixed_noise"]), "fake", run["step"])
    if run["progress"]:
        rows = torch.stack(run["progress"])
        rows = rows[torch.linspace(0, len(rows) - 1, min(len(rows), 10)).round().long()]
        save_image(rows.view(-1, 1, 28, 28), Path(out_dir) / "progress.png", nrow=8, normalize=True, value_range=(-1, 1))
    if run["history"]:
        steps, g, d = zip(*run["history"])
        fig = plt.figure(figsize=(6, 3))
        plt.plot(steps, g, label="G loss")
        plt.plot(steps, d, label="D loss")
        plt.xlabel("step"), plt.legend(), plt.tight_layout()
        fig.savefig(Path(out_dir) / "losses.png")
        plt.close(fig)
    print(f"saved {Path(out_dir) / 'generator.pth'} and {Path(out_dir) / 'discriminator.pth'}")


# ---- sampling from a trained generator ----
def load_generator(path):
    """A Generator rebuilt from a generator.pth, which holds its own widths."""
    saved = load(path, "generator")
    try:
        G = Generator(saved["config"]["z_dim"], tuple(saved["config"]["g_widths"]))
        G.load_state_dict(saved["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        fail(f"{path} is not a basic_gan generator ({str(e).splitlines()[0]})")
    return G


def sample_digits(n):
    G = load_generator(Path(out_dir) / "generator.pth")
    torch.manual_seed(seed)
    images = (generate(G, torch.randn(n, G.z_dim)).view(n, 1, 28, 28) + 1) / 2  # [0, 1] for scorers
    torch.save(images, Path(out_dir) / "samples.pt")
    save_image(images, Path(out_dir) / "samples.png", nrow=math.ceil(n ** 0.5))
    # Straight lines between random points of the noise space: smooth changes mean G learned a
    # space of digits rather than a lookup table of memorized ones.
    ends, t = torch.randn(2, 8, 1, G.z_dim), torch.linspace(0, 1, 10).view(1, 10, 1)
    line = generate(G, torch.lerp(ends[0], ends[1], t).view(-1, G.z_dim))
    save_image(line.view(-1, 1, 28, 28), Path(out_dir) / "interpolation.png", nrow=10, normalize=True, value_range=(-1, 1))
    print(f"wrote {n} samples to {Path(out_dir) / 'samples.png'} and {Path(out_dir) / 'samples.pt'}, "
          f"and {Path(out_dir) / 'interpolation.png'}")
    return images


# ---- command line: --name=value for every constant above, checked against its default ----
def parse_args(argv):
    """Overrides from argv as {name: value}; every problem is one line and exit code 2."""
    overrides, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print_help()
            raise SystemExit(0)
        if not arg.startswith("--") or arg == "--":
            fail(f"unexpected argument {arg!r}: every option is --name=value (see --help)")
        key, has_value, text = arg[2:].partition("=")
        key = key.replace("-", "_")
        if key not in CONFIG_KEYS:
            close = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            fail(f"unknown option --{key}" + (f"; did you mean --{close[0]}?" if close else " (see --help)"))
        default = globals()[key]
        if not has_value:  # --epochs 3, or a bare --resume meaning True
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                text, i = argv[i + 1], i + 1
            elif isinstance(default, bool):
                text = "True"
            else:
                fail(f"--{key} needs a value, e.g. --{key}={default!r}")
        overrides[key] = convert(key, text, default)
        i += 1
    return overrides


def convert(key, text, default):
    """The text as a value of the default's type, or a one-line error."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text
    if isinstance(default, str):
        return value if isinstance(value, str) else text
    if isinstance(default, bool) and isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(default, tuple) and isinstance(value, (list, int)):
        value = tuple(value) if isinstance(value, list) else (value,)
    if type(value) is not type(default) or (isinstance(value, tuple) and not all(type(v) is int for v in value)):
        kind = {"tuple": "a tuple of ints", "int": "an int", "float": "a number", "bool": "True or False"}[type(default).__name__]
        fail(f"--{key} must be {kind} like {default!r}, got {text!r}")
    return value


def check_config():
    """Impossible values, refused before any data or output is touched."""
    c = config()
    positive = ["batch_size", "z_dim", "info_step", "r1_every"]
    for k in positive:
        if c[k] <= 0:
            fail(f"{k} must be > 0, got {c[k]}")
    for k in ("epochs", "max_steps", "sample"):
        if c[k] < 0:
            fail(f"{k} must be >= 0, got {c[k]}")
    for k in ("g_widths", "d_widths"):
        if not c[k] or min(c[k]) <= 0:
            fail(f"{k} must be a non-empty tuple of widths > 0, got {c[k]}")
    for k in ("lr", "lr_decay", "r1_gamma", "beta1", "ema_decay"):
        if not math.isfinite(c[k]):
            fail(f"{k} must be a finite number, got {c[k]}")
    if c["lr"] <= 0:
        fail(f"lr must be > 0, got {c['lr']}")
    if c["r1_gamma"] < 0:
        fail(f"r1_gamma must be >= 0 (0 = off), got {c['r1_gamma']}")
    if not 0 <= c["beta1"] < 1 or not 0 <= c["ema_decay"] < 1:
        fail(f"beta1 and ema_decay must be in [0, 1), got {c['beta1']} and {c['ema_decay']}")
    if not 0 <= c["lr_decay"] <= 1:
        fail(f"lr_decay must be in [0, 1] (a fraction of training), got {c['lr_decay']}")
    choices = {"device": ("auto", "cpu", "cuda", "mps"), "precision": ("auto", "fp32", "bf16"),
               "dataset": ("MNIST", "FashionMNIST")}
    for k, allowed in choices.items():
        if c[k].split(":")[0] not in allowed or (k != "device" and ":" in c[k]):
            fail(f"{k} must be one of {', '.join(allowed)}, got {c[k]!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"device {device!r} was asked for, but torch sees no CUDA GPU here; use --device=cpu or auto")
    if device == "mps" and not torch.backends.mps.is_available():
        fail("device 'mps' was asked for, but this machine has no MPS; use --device=cpu or auto")
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        fail(f"data_dir {data_dir!r} is a file, not a folder")
    existing = next(p for p in [Path(out_dir).absolute(), *Path(out_dir).absolute().parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        fail(f"out_dir {out_dir!r} is not writable (checked {existing})")
    for wanted, name in ((resume, "checkpoint.pt"), (sample, "generator.pth")):
        if wanted and not (Path(out_dir) / name).is_file():
            fail(f"no {name} in {out_dir}: train first, or point --out_dir at the run's folder")


def print_help():
    """The constants block itself is the help: each name, its default and its comment."""
    print(__doc__)
    source = Path(__file__).read_text().splitlines()
    for k in CONFIG_KEYS:
        line = next((s for s in source if re.match(rf"{k}\s*=", s)), "")
        print(f"  --{k:<11} {globals()[k]!r:<26} {line.partition('#')[2].strip()}")


def main(argv=None):
    """Parse the overrides into the constants, then sample or train."""
    globals().update(parse_args(sys.argv[1:] if argv is None else argv))
    check_config()
    if sample:
        return sample_digits(sample)
    return train()


if __name__ == "__main__":
    main()
