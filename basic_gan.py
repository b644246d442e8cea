"""basic_gan.py: a GAN that learns to draw MNIST digits, in one file. Read it top to bottom: the
story is in notebook cells (# %%); what a learner need not read is below the plumbing banner.

    python basic_gan.py                       train with the constants below
    python basic_gan.py --epochs=3 --lr=1e-4  override any constant
    python basic_gan.py --sample=64           draw digits from outputs/generator.pth
    python basic_gan.py --resume              continue from outputs/checkpoint.pt
    python basic_gan.py --help                list the constants
"""
# %% imports
import contextlib, copy, math, sys, time  # noqa: E401
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image
from tqdm.auto import tqdm

# %% the constants: edit them here, or override them: python basic_gan.py --name=value
epochs = 50                # passes over the 60k images (6 min on 2 AVX-512 cores); 40 look worse
batch_size = 128           # images per step
lr = 6e-4                  # Adam learning rate: D's, and G's n_critic times it
lr_decay = 0.5             # over this last fraction of training, lr falls linearly to 0; 0 = off
beta1 = 0.0                # Adam beta1; 0 = no momentum: each net answers the other's latest move
beta2 = 0.9                # Adam beta2: a short memory of gradient sizes, as the game keeps moving
n_critic = 2               # D learns on every batch, G on every n_critic-th, at n_critic x the lr
z_dim = 64                 # length of the noise vector G draws from
g_widths = (128, 256, 512, 1024)  # hidden layer widths of the Generator
d_widths = (512, 256, 128)  # hidden layer widths of the Discriminator
r1_gamma = 1.0             # R1 penalty on D's gradient at real digits; 0 = off
r1_every = 4               # apply R1 every this many steps (scaled up to match)
ema_decay = 0.99           # draw from an average of G's last ~100 steps, ~1000 as lr falls; 0 = off
info_step = 500            # print losses and show grids every this many steps
device = "auto"            # auto (cuda, then mps, then cpu), cpu, cuda, mps
precision = "auto"         # auto: bf16 on a CPU that has it natively, else fp32 (TF32 on CUDA)
seed = 0                   # seed for weights, noise and data order
dataset = "MNIST"          # MNIST, FashionMNIST, or folder: every picture under data_dir
data_dir = "data"          # where the dataset is (or is downloaded to)
image_size = 28            # pixels per side: each image is centre-cropped square and resized
channels = 1               # 1 for gray, 3 for colour
out_dir = "outputs"        # grids, weights, checkpoint and TensorBoard runs
max_steps = 0              # stop after this many steps (the lr still spans epochs); 0 = no limit
resume = False             # continue from out_dir/checkpoint.pt
sample = 0                 # >0: train nothing, draw this many digits from out_dir/generator.pth
conditional = False        # True: G and D also see each image's class, so G draws the one asked for
label = ""                 # the class --sample draws from a conditional G; "" = each in turn

# The constants as this cell writes them (see constants_cell): each main() starts from them.
DEFAULTS = {k: v for k, v in globals().items() if k.islower() and not k.startswith("_")
            and isinstance(v, (bool, int, float, str, tuple, list, Path, type(None)))}


# %% show(): a grid of images, inline in a notebook, in a window on a desktop, else a PNG file
def grid(images, nrow=8):
    """Images in [-1, 1], in any layout, as one picture in [0, 1]."""
    images = images.detach().float().cpu().view(-1, channels, image_size, image_size)
    return make_grid(images, nrow=nrow, normalize=True, value_range=(-1, 1))


def show(images, title, step=0):
    backend = matplotlib.get_backend().lower()
    if backend in ("agg", "pdf", "ps", "svg", "cairo"):  # no screen: the grid itself, as a file
        return save_png(grid(images), Path(out_dir) / f"{title}_step{step:06d}.png")
    window = "inline" not in backend
    fig = plt.figure(title if window else None, figsize=(4, 4), clear=True)  # a window per title
    plt.imshow(grid(images).permute(1, 2, 0).numpy())
    plt.title(f"{title}, step {step}"), plt.axis("off")
    if window:
        return plt.pause(0.001)  # draw without blocking training
    plt.show()
    plt.close(fig)


# %% data: the training images decoded once into one uint8 tensor, batched by a DataLoader
def load_images(split="train"):
    """A split's images (uint8, N x channels x image_size²), each one's class, their names."""
    if dataset == "folder":
        return load_folder(Path(data_dir))  # every picture under data_dir; a subfolder is a class
    images = fit(load_digits(split).unsqueeze(1))  # 28 x 28 gray, or as image_size, channels ask
    return images, *load_labels(split, len(images))  # from the label file, where conditional


def make_dataloader(images, labels, epoch, start=0):
    """An epoch's batches from `start` on, in a (seed, epoch) order: one gather each, no Python per
    image (the sampler hands over a batch of indices at a time), and a resume replays the order."""
    shuffle = torch.Generator().manual_seed(hash((seed, epoch)))
    order = torch.randperm(len(images), generator=shuffle)
    batches = order[: len(images) // batch_size * batch_size].view(-1, batch_size)[start:]
    return DataLoader(TensorDataset(images, labels), sampler=batches.to(images.device),
                      batch_size=None, generator=torch.Generator())  # its own: not z's seed


def to_model_range(batch):
    """uint8 pixels in [0, 255] to flat float images in [-1, 1], the range of G's tanh."""
    return batch.flatten(1).float().div(127.5).sub(1)


# %% models: the seed course's MLPs
class Generator(nn.Module):
    def __init__(self, z_dim, widths, pixels=28 * 28, classes=0):  # pixels: channels x size x size
        super().__init__()
        self.z_dim, self.embed = z_dim, nn.Embedding(classes, classes) if classes else None
        layers, width_in = [], z_dim + classes
        for width in widths:
            layers += [nn.Linear(width_in, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            width_in = width
        self.net = nn.Sequential(*layers, nn.Linear(width_in, pixels), nn.Tanh())

    def forward(self, z, labels=None):
        if self.embed is not None:  # conditional: the class, as a learned vector beside the noise
            z = torch.cat([z, self.embed(labels)], 1)
        return self.net(z)


class BatchSpread(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018): the batch's mean feature spread, as one
    more feature of each image, so D sees fakes too alike (G collapsing); conditional: per class."""
    def forward(self, x, labels=None, classes=0):
        spread = (x.float().std(0, unbiased=False).mean() if labels is None  # summed in fp32
                  else spread_within_classes(x, labels, classes))  # in the plumbing below
        return torch.cat([x, spread.expand(len(x), 1).to(x.dtype)], 1)


class Discriminator(nn.Module):
    def __init__(self, widths, pixels=28 * 28, classes=0):
        super().__init__()
        self.embed = nn.Embedding(classes, widths[-1] + 1) if classes else None  # + the spread
        layers, width_in = [], pixels
        for width in widths:
            layers += [nn.Linear(width_in, width), nn.LeakyReLU(0.2, inplace=True)]
            width_in = width
        self.features, self.spread = nn.Sequential(*layers), BatchSpread()  # then + 1: the spread
        self.head = nn.Linear(width_in + 1, 1 + classes)  # a logit: real or fake?, then one a class

    def forward(self, x, labels=None):
        """D's logit that x is real (the loss adds the sigmoid); conditional: also one per class."""
        if self.embed is None:
            return self.head(self.spread(self.features(x))), None
        features = self.spread(self.features(x), labels, self.embed.num_embeddings)  # per class
        logits = self.head(features)  # and a projection term: is x of its class? (Miyato & Koyama
        projection = (self.embed(labels) * features).sum(1, keepdim=True)  # 2018)
        return logits[:, :1] + projection, logits[:, 1:]  # and D's guess of each class (AC-GAN)


# %% the two players, an Adam optimizer each, and the average of G that draws the samples
def make_models(dev, classes=0):  # classes: how many, for a conditional GAN
    pixels = channels * image_size ** 2
    G = Generator(z_dim, g_widths, pixels, classes).to(dev)
    D = Discriminator(d_widths, pixels, classes).to(dev)
    fused = dev.type in ("cpu", "cuda")  # one kernel for all of Adam's math: 1.2x a CPU step
    opt_g = torch.optim.Adam(G.parameters(), lr, betas=(beta1, beta2), fused=fused)
    opt_d = torch.optim.Adam(D.parameters(), lr, betas=(beta1, beta2), fused=fused)
    G_ema = make_ema(G) if ema_decay > 0 else None  # the average of G's weights: it draws
    return G, D, G_ema, opt_g, opt_d


# %% one training step: D learns to tell real from fake; G, every n_critic-th step, to fool D
criterion = nn.BCEWithLogitsLoss()  # on D's logit: -log D(x) for a label 1, -log(1 - D(x)) for 0
D_CLASS_WEIGHT, G_CLASS_WEIGHT = 0.5, 1.0  # conditional: the class loss's pull on D and on G


def r1_penalty(real, real_logit):
    # R1 (Mescheder et al. 2018): a D that is flat around real digits cannot push G into one mode.
    grad, = torch.autograd.grad(real_logit.sum(), real, create_graph=True)
    return r1_gamma / 2 * grad.square().sum(1).mean()


def train_step(G, D, opt_g, opt_d, real, labels=None, use_r1=False, learn_g=True,
               autocast=contextlib.nullcontext):
    # What to watch: D(x) and D(G(z)), D's mean belief that real and fake digits are real. Healthy:
    # both near 0.5, D(x) a little higher: D can barely tell them apart. D wins outright when
    # D(x) -> 1 and D(G(z)) -> 0 for good: its loss falls to 0, G's climbs, the fakes stop
    # improving. G collapses when the fakes show one digit. labels: None unless conditional.
    z = torch.randn(len(real), z_dim, device=real.device)
    real.requires_grad_(use_r1)
    with autocast():  # bf16 where the CPU has it natively
        # (1) Update D to maximize log D(x) + log(1 - D(G(z))): call real digits real, fakes fake.
        with torch.set_grad_enabled(learn_g):  # G's graph only where G learns from this batch
            fake = G(z, labels)  # one G forward serves both updates: detached for D, attached for G
        (real_logit, real_classes), (fake_logit, _) = D(real, labels), D(fake.detach(), labels)
        losses = {"D_real": criterion(real_logit, torch.ones_like(real_logit)),  # -log D(x)
                  "D_fake": criterion(fake_logit, torch.zeros_like(fake_logit))}  # -log(1-D(G(z)))
        d_loss = losses["D_real"] + losses["D_fake"]
        if labels is not None:  # conditional: D also learns to name real images' classes (AC-GAN,
            losses["D_class"] = nn.functional.cross_entropy(real_classes, labels)  # Odena 2017)
            d_loss = d_loss + D_CLASS_WEIGHT * losses["D_class"]
    if use_r1:  # lazy: every r1_every steps, scaled up so the average pull is the same
        losses["R1"] = r1_penalty(real, real_logit.float())
        d_loss = d_loss + r1_every * losses["R1"]
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    losses["D(x)"] = real_logit.detach().sigmoid().mean()  # D's mean belief that x is real
    losses["D(G(z))"] = fake_logit.detach().sigmoid().mean()
    if not learn_g:  # G learns on every n_critic-th batch only: D keeps a step ahead of it
        return {name: value.detach() for name, value in losses.items()}
    # (2) Update G to maximize log D(G(z)): to make D call the fakes real (not to minimize
    # log(1 - D(G(z))), as the minimax game reads: that gives G no gradient while D wins).
    D.requires_grad_(False)  # G's update needs gradients through D, not for D's weights
    with autocast():
        fake_logit_now, fake_classes = D(fake, labels)
        losses["G"] = g_loss = criterion(fake_logit_now, torch.ones_like(fake_logit_now))
        if labels is not None:  # and G draws fakes that D names as the class asked for
            losses["G_class"] = nn.functional.cross_entropy(fake_classes, labels)
            g_loss = g_loss + G_CLASS_WEIGHT * losses["G_class"]
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    D.requires_grad_(True)
    return {name: value.detach() for name, value in losses.items()}  # tensors: nothing waits


def lr_at(step, total_steps):
    """lr, constant at first, then falling linearly to 0 over the last lr_decay of training."""
    return lr * min(1.0, (total_steps - step) / (lr_decay * total_steps)) if lr_decay > 0 else lr


# %% the training loop: for each epoch, for each batch, one step; a report every info_step
def train(checkpoint=None):
    with training_run(checkpoint) as (images, labels, run):  # the lock, data, TensorBoard: below
        G, D, G_ema, opt_g, opt_d = make_models(run.device, len(run.classes))
        step = start(run, checkpoint, G, D, G_ema, opt_g, opt_d)  # 0, or where a run stopped
        steps_per_epoch, total_steps, last_step, report_every = plan(len(images))
        for epoch in range(step // steps_per_epoch, epochs):
            done = step % steps_per_epoch  # > 0 where a resume lands mid-epoch
            bar = tqdm(make_dataloader(images, labels, epoch, done), initial=done, leave=False,
                       desc=f"epoch {epoch + 1}/{epochs}", total=steps_per_epoch)
            for batch, batch_labels in bar:
                lr_now = lr_at(step, total_steps)  # G's n_critic x it, as it learns n_critic x less
                for opt, share in ((opt_d, 1), (opt_g, n_critic)):
                    opt.param_groups[0]["lr"] = lr_now * share
                real, use_r1 = to_model_range(batch), r1_gamma > 0 and step % r1_every == 0
                labels_now = batch_labels if conditional else None
                losses = train_step(G, D, opt_g, opt_d, real, labels_now, use_r1,
                                    learn_g=(step + 1) % n_critic == 0, autocast=run.autocast)
                ema_update(G_ema, G, step, lr_now / lr)  # the average of G moves towards G
                run.recent.append(losses)
                step += 1
                if step % report_every == 0:
                    report(run, step, G_ema or G, real, lr_now)
                if STOP or step == last_step:
                    break
            bar.close()
            save_run(run, step, G, D, G_ema, opt_g, opt_d)  # after every epoch; stops on Ctrl-C
            if step == last_step:
                break
    finish(run, step, G_ema or G)
    return G, D, G_ema


def report(run, step, G, real, lr_now):
    """Every info_step: the mean losses and D's beliefs since the last report, and both grids."""
    mean, run.recent = mean_losses(run, step), []  # since the last report, read back in one go
    images_per_s = log_scalars(run, step, mean, lr_now)
    tqdm.write(report_line(step, mean, images_per_s))  # step 500: D loss 1.36 (real 0.68 + ...
    fake = generate(G, run.fixed_noise, run.fixed_labels)  # the same each time: G's progress
    run.progress.append(fake.add(1).mul(127.5).round().byte())  # progress.png, .gif: 1 byte a pixel
    run.progress = run.progress[::2] if len(run.progress) > 200 else run.progress  # at most 200
    for tag, images in (("fake", fake), ("real", real[:64])):
        show(images, tag, step)
        run.writer.add_image(f"images/{tag}", grid(images), step)


# %% saving the weights (after every epoch, so also at the end), and drawing new digits
def save_models(G, D, G_ema, classes=()):  # classes: their names, for a conditional G
    # The generator file holds the averaged weights: they draw the better digits.
    best_g = G_ema if G_ema is not None else G
    for name, model in (("generator.pth", best_g), ("discriminator.pth", D)):
        atomic_save({"state_dict": moved(model.state_dict(), "cpu"), "config": config(),
                     "classes": list(classes)}, Path(out_dir) / name)  # a plain torch.load reads it


@torch.no_grad()
def generate(G, noise, labels=None):  # labels: the class of each, for a conditional G
    check_labels(G, labels)
    training = G.training
    images = G.eval()(noise, labels).float()  # BatchNorm's running statistics, not the batch's
    G.train(training)
    return images


# %% ==== plumbing a learner need not read: set-up, files, checkpoints, command line, checks ====
import argparse, ast, difflib, gzip, linecache, os, re, shlex, shutil, signal  # noqa: E401
import threading, unicodedata, warnings, zlib  # noqa: E401
from types import SimpleNamespace

from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import datasets
from torchvision.transforms.v2 import functional as TF

STOP = []  # Ctrl-C and SIGTERM only record the signal here; the loop stops between two steps


@contextlib.contextmanager
def training_run(checkpoint):
    """All around the loop: the lock, device, data, the run's record, TensorBoard, Ctrl-C."""
    with only_this_run_in(Path(out_dir)), writing(Path(out_dir) / "runs"):
        if checkpoint is None:
            keep_the_run_there()
        dev, prec = pick_device(say=True)
        torch.manual_seed(seed)
        torch.set_float32_matmul_precision("high")  # TF32 on GPUs that have it; no effect on CPU
        images, labels, classes, data = training_data(dev)
        run = SimpleNamespace(**checkpoint["run"]) if checkpoint else SimpleNamespace(
            step=0, run_name=f"{dataset}_seed{seed}_{time.strftime('%Y%m%d-%H%M%S')}",
            data=data, precision=prec,  # what it trains on, and how: a resume checks both
            classes=classes, recent=[], history=[], progress=[])
        if checkpoint:
            same_data_and_precision(run, data, prec)
        run.device, run.timer = dev, (time.perf_counter(), run.step)  # the timer: for images/s
        run.autocast = lambda: (torch.autocast(dev.type, torch.bfloat16) if prec == "bf16"
                                else contextlib.nullcontext())
        steps_per_epoch, total, last, report_every = plan(len(images))
        print(f"training on {device_name(dev)} in {prec}: {count(epochs, 'epoch')} of "
              f"{count(steps_per_epoch, 'step')}, a report every {report_every}"
              + (f", stopping at step {last} (max_steps)" if last < total else ""))
        STOP.clear()
        stops = {s: signal.signal(s, lambda signum, _: STOP.append(signum)) for s in (
            signal.SIGINT, signal.SIGTERM) if threading.current_thread() is threading.main_thread()}
        try:
            # purge_step: a resume drops what a killed run logged after its checkpoint
            with SummaryWriter(Path(out_dir) / "runs" / run.run_name,
                               purge_step=run.step or None) as run.writer:
                if run.step == 0:  # the hyperparameters as a table; a resumed run appends
                    run.writer.add_text("hyperparameters", "|name|value|\n|-|-|\n" + "\n".join(
                        f"|{k}|{v}|" for k, v in config().items()))
                yield images, labels, run
        finally:
            for s, handler in stops.items():
                signal.signal(s, handler)


def start(run, checkpoint, *parts):
    """The step to go on from: 0 with the noise the grids show, or a checkpoint's, and its state."""
    if checkpoint is None:  # drawn after the models, as the runs before this function were
        rows = torch.arange(len(run.classes), device=run.device).repeat_interleave(8)  # 8 a class
        run.fixed_labels = rows if conditional else None
        run.fixed_noise = torch.randn(len(rows) if conditional else 64, z_dim, device=run.device)
        return 0
    for part, name in zip(parts, PARTS):
        if part is not None and checkpoint[name] is not None:  # G_ema: None where ema_decay is 0
            part.load_state_dict(checkpoint[name])
    torch.set_rng_state(checkpoint["rng"])
    if checkpoint["device_rng"] and checkpoint["device_rng"][0] == run.device.type:
        gpu_rng(run.device).set_rng_state(checkpoint["device_rng"][1], run.device)
    print(f"resuming {run.run_name} at step {run.step}")
    vars(run).update(moved(vars(run), run.device))  # the losses since the last report, the noise
    return run.step


def same_data_and_precision(run, data, prec):
    if run.data != data:
        fail(f"{data_dir} holds {data['images']} {dataset} images (crc32 {data['crc32']:08x}), "
             f"not the {run.data['images']} (crc32 {run.data['crc32']:08x}) that {out_dir} "
             f"trained on: set --data_dir to those")
    if run.precision != prec:
        print(f"note: {out_dir} trained in {run.precision}, goes on in {prec}: not bit-exact")
        run.precision = prec


def training_data(dev):
    """The training images and their classes, on the device, and what a checkpoint records."""
    images, labels, classes = load_images("train")
    if conditional and len(classes) < 2:
        fail(f"conditional needs two classes at least, and {data_dir} holds {len(classes)}: "
             f"put each class's pictures in a subfolder of their own, named after it")
    if len(images) < batch_size:
        fail(f"{data_dir} holds {len(images)} training images, fewer than one batch of "
             f"{batch_size}: set --batch_size to at most {len(images)}")
    data = {"dataset": dataset, "images": len(images), "crc32": zlib.crc32(images.numpy())}
    if conditional:  # what G will learn to draw, each by name: a folder in the wrong place shows
        print(f"{len(classes)} classes: {', '.join(classes)}")
    if dev.type == "cuda" and images.nbytes > torch.cuda.mem_get_info(dev)[0] / 2:  # it goes there
        fail(f"{len(images)} images need {images.nbytes / 1e9:.1f} GB, more than half of what is "
             f"free on {dev}: try a smaller --image_size, or --device=cpu")
    return images.to(dev), labels.to(dev), classes, data  # 47 MB as uint8: on a GPU it stays


def spread_within_classes(x, labels, classes):
    """BatchSpread under --conditional: each class's feature spread among its images in the batch,
    averaged over the classes with two or more. Across classes the spread is wide whatever G does:
    within one, fakes of a class that are too alike show. Matrix products, with no host sync."""
    members = nn.functional.one_hot(labels, classes).float()  # N x C: image n is of class c
    counts = members.sum(0)
    size = counts.clamp(min=1)[:, None]  # a class not in the batch: 0 / 1, not 0 / 0
    mean = members.T @ x.float() / size
    deviation = x.float() - mean[labels]
    std = (members.T @ deviation.square() / size).add(1e-8).sqrt()  # C x features
    shared = (counts > 1).float()  # one image is no spread
    return (std.mean(1) * shared).sum() / shared.sum().clamp(min=1)


def make_ema(G):
    """A copy of G that follows a running average of its weights (ema_update moves it after
    each of G's steps): it draws the better digits, and the last save gives it BatchNorm
    statistics measured on its own output (settled). It only samples, so it needs no gradients."""
    return copy.deepcopy(G).requires_grad_(False)


@torch.no_grad()
def ema_update(G_ema, G, step, lr_share=1.0):
    """Move the average towards G, BatchNorm's statistics too (settled measures them at the end).
    It spans at most the last twentieth of the steps so far, so it keeps up with a G that still
    changes fast, and at most about 1 / (1 - ema_decay) steps while the lr is at its peak, up to 10
    times that as the lr falls (lr_share: lr now / its peak): a run stopped early draws from a
    recent G, the end of a long one from a long, even average. G changes on every n_critic-th step
    only, so there the average makes that step's move and those of the n_critic - 1 steps after it
    at once, since all are towards the same G (exact for the weights, not for BatchNorm's
    statistics, which change on every step). The decay is a Python number: nothing waits."""
    if G_ema is None or (step + 1) % n_critic:  # only D learned: G is as it was at its last move
        return
    longest = 1 - (1 - ema_decay) * max(lr_share, 0.1)
    decay = math.prod(min((1 + s) / (21 + s), longest) if s else 0.0  # step 0: a copy of G
                      for s in range(step, step + n_critic))
    torch._foreach_lerp_(floats(G_ema), floats(G), 1 - decay)  # one call for all of G's weights


def floats(net):  # its weights and BatchNorm's statistics (not the count of batches it saw)
    return [*net.parameters(), *(b for b in net.buffers() if b.is_floating_point())]


@torch.no_grad()
def settled(G_ema, seed, n=16384, chunk=1024):
    """G_ema, its BatchNorm statistics measured on n of its own images, for the last save. Its
    weights average G's, its statistics average G's statistics: while G still moves, the two are out
    of step. Fixed noise of its own, so the run's draws stay the same; n large, since the samples
    are sensitive to these statistics (Fashion-MNIST, 40 epochs: FID 6.3 to 8.2 from 2,048). Where
    a generator is loaded to draw, they are measured again: the same, from a file of any save."""
    if G_ema is None:
        return None
    norms = [m for m in G_ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta, training = [m.momentum for m in norms], G_ema.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain mean over the chunks below
    noise, dev = torch.Generator().manual_seed(seed), next(G_ema.parameters()).device
    classes = G_ema.embed.num_embeddings if G_ema.embed is not None else 0  # each class in turn:
    G_ema.train()  # as torch's swa_utils.update_bn does, which would pass G no labels
    for _ in range(n // chunk):
        z = torch.randn(chunk, G_ema.z_dim, generator=noise).to(dev)
        G_ema(z, torch.arange(chunk, device=dev) % classes if classes else None)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return G_ema.train(training)


def pick_device(say=False):
    """The device and precision to train in. auto: a CUDA GPU this torch can run on (if not, the
    reason is said), then a Mac's MPS, then the CPU. bf16 only where a CPU has it natively (AVX2
    steps ~25x slower in it); GPUs: fp32 with TF32."""
    cuda, why_not = torch.cuda.is_available(), cuda_problem() if device == "auto" else None
    if why_not and say:
        print(f"note: {why_not}. Training on the CPU")
    mps = torch.backends.mps.is_available()
    auto = "cuda" if cuda and not why_not else "mps" if mps else "cpu"
    dev = torch.device(auto if device == "auto" else device)
    native_bf16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    auto = "bf16" if dev.type == "cpu" and native_bf16 else "fp32"
    return dev, auto if precision == "auto" else precision


def device_name(dev):
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        return f"CPU with {torch.backends.cpu.get_cpu_capability()}"
    return dev.type.upper()


def cuda_problem(index=0):
    """Why torch cannot train on the CUDA GPU here, in words; None where it can or there is none."""
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return None  # a torch built for the CPU (or a Mac)
        try:
            torch.cuda.init()  # raises, with the reason: is_available() only warned, and once
        except Exception as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return None if re.search(r"no NVIDIA driver|no CUDA GPUs", reason, re.I) else (
                f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use the GPU: "
                f"{reason[:160]}")
        return None
    name, archs = torch.cuda.get_device_name(index), torch.cuda.get_arch_list()
    major, minor = torch.cuda.get_device_capability(index)
    if torch.version.cuda and archs and not has_kernels(major, minor, archs):  # not ROCm's gfx
        built = ", ".join(a for a in archs if a.startswith("sm_"))
        return (f"this torch has no kernels for the {name} (sm_{major}{minor}), only for {built}: "
                f"pip install torch=={torch.__version__.split('+')[0]} torchvision --index-url "
                f"https://download.pytorch.org/whl/cu126 (its CUDA 12.6 build runs Maxwell, "
                f"Pascal and Volta GPUs)")
    return None


def has_kernels(major, minor, arch_list):
    """sm_XY code runs on GPUs of capability X.Y to X.9; compute_XY (PTX) on X.Y and up."""
    def version(arch):
        return int(re.sub(r"[^0-9]", "", arch.split("_")[1]))
    return any(a.startswith("sm_") and version(a) // 10 == major and version(a) % 10 <= minor
               or a.startswith("compute_") and version(a) <= 10 * major + minor for a in arch_list)


def plan(num_images):
    """Steps per epoch, the steps the lr schedule spans, where this command stops, and how often
    it reports: every info_step, or 3 times in all (each step, below 6) where that makes fewer
    than 2."""
    steps = num_images // batch_size
    total = epochs * steps
    last = min(total, max_steps or total)
    return steps, total, last, info_step if last >= 2 * info_step else max(1, last // 3)


def mean_losses(run, step):
    """Each loss's mean since the last report (R1's over its steps), read at once, checked as
    finite. A save checks them too, and leaves them to the next report."""
    since, names = step - len(run.recent), dict.fromkeys(n for losses in run.recent for n in losses)
    means = torch.stack([torch.stack([s[n] for s in run.recent if n in s]).float().mean()
                         for n in names]).tolist() if names else []
    mean = dict(zip(names, means))
    if not all(map(math.isfinite, means)):
        fail(f"between steps {since} and {step} the loss is not finite "
             f"({', '.join(f'{k} {v:.3g}' for k, v in mean.items())}). {checkpoint_left()}", code=1)
    return mean


def report_line(step, mean, images_per_s):
    extra = "".join(f", {name.replace('_', ' ')} {mean[name]:.3f}"
                    for name in ("R1", "D_class", "G_class") if name in mean)
    g_loss = f"{mean['G']:.3f}" if "G" in mean else "-"  # "-": G learned on none of these steps
    return (f"step {step}: D loss {mean['D_real'] + mean['D_fake']:.3f} "
            f"(real {mean['D_real']:.3f} + fake {mean['D_fake']:.3f}), G loss {g_loss}, "
            f"D(x) {mean['D(x)']:.2f}, D(G(z)) {mean['D(G(z))']:.2f}{extra}, "
            f"{images_per_s:.0f} img/s")


def log_scalars(run, step, mean, lr_now):
    """The report's numbers to TensorBoard; images/s counts this process's steps only."""
    seconds = time.perf_counter() - run.timer[0]
    images_per_s = (step - run.timer[1]) * batch_size / seconds
    run.timer = (time.perf_counter(), step)
    d_loss = mean["D_real"] + mean["D_fake"]  # the game's: no R1, no class term
    run.history.append((step, mean.get("G", math.nan), d_loss))  # nan: a gap in the curve
    for name, value in {"D": d_loss, **mean}.items():
        run.writer.add_scalar(("charts/" if "(" in name else "losses/") + name, value, step)
    run.writer.add_scalar("charts/lr", lr_now, step)
    run.writer.add_scalar("charts/images_per_s", images_per_s, step)
    return images_per_s


def save_run(run, step, G, D, G_ema, opt_g, opt_d):
    """The checkpoint and the weights, after every epoch; then stop, on Ctrl-C."""
    if run.recent:
        mean_losses(run, step)  # refuses to save a run whose loss is not finite
    save_checkpoint(run, step, G, D, G_ema, opt_g, opt_d)
    last = step == plan(run.data["images"])[2]  # a stop on the last step: the run ends as it would
    if STOP or last:  # the last save (the checkpoint resumes as it was): the generator draws
        settled(G_ema if G_ema is not None else G, seed)  # with statistics of its own output
    save_models(G, D, G_ema, run.classes)
    run.writer.flush()
    if STOP and not last:
        print(f"\nstopped at step {step}, checkpoint saved. Continue with: "
              f"{resume_command()}", file=sys.stderr)
        raise SystemExit(128 + STOP[0])  # 130 for Ctrl-C, 143 for SIGTERM


def resume_command(*more):  # what goes on, as it is typed where it is shown
    if in_notebook():  # main() itself after %run or a pasted cell; basic_gan.main() if imported
        names = sys.modules["IPython"].get_ipython().user_ns
        ran = globals().get("__name__") in ("__main__", None)  # None: after %run, which drops it
        module = "" if ran or names.get("main") is main else next(  # as it is named there
            (f"{k}." for k, v in names.items() if type(v) is type(sys) and vars(v).get("main")
             is main), "basic_gan.")
        return f"{module}main({['--resume', f'--out_dir={out_dir}', *more]!r})"
    return " ".join(["python basic_gan.py --resume", f"--out_dir={shlex.quote(out_dir)}", *more])


def finish(run, step, G):
    """The end of training: a last grid, the digits forming (row by row, and as a moving picture),
    and the loss curve."""
    show(generate(G, run.fixed_noise, run.fixed_labels), "fake", step)
    if run.progress:
        frames = torch.stack(run.progress).cpu().float().div(127.5).sub(1)  # each report's grid
        rows = frames[evenly(len(frames), 10), :8]
        save_png(grid(rows), Path(out_dir) / "progress.png")
        save_gif(frames[evenly(len(frames), 100)], Path(out_dir) / "progress.gif")
    if run.history:
        steps, g, d = zip(*run.history)
        fig = plt.figure(figsize=(6, 3))
        plt.plot(steps, g, steps, d)
        plt.xlabel("step"), plt.legend(["G loss", "D loss"]), plt.tight_layout()
        save_figure(fig, Path(out_dir) / "losses.png")
    print(f"saved {Path(out_dir) / 'generator.pth'} and {Path(out_dir) / 'discriminator.pth'}")
    total_steps = plan(run.data["images"])[1]
    if step < total_steps:  # max_steps stopped it short of its epochs
        print(f"stopped at step {step} of {total_steps} (max_steps). To go on: {resume_command()}")


def evenly(n, most):  # at most `most` of n things, evenly spread, the first and the last among them
    return torch.linspace(0, n - 1, min(n, most)).round().long()


def save_gif(frames, path):
    """The fixed noise's grid at each report as the frames of a GIF, the last held; shown inline
    in a notebook, as the grids are."""
    pictures = [Image.fromarray(grid(f).mul(255).round().byte().permute(1, 2, 0).numpy())
                for f in frames]
    with writing(path):
        pictures[0].save(path, save_all=True, append_images=pictures[1:], loop=0,
                         duration=[150] * (len(pictures) - 1) + [2000])
    if in_notebook() and "inline" in matplotlib.get_backend().lower():
        from IPython.display import Image as Picture, display
        display(Picture(filename=str(path)))


def save_png(picture, path):  # straight from the grid: a fifth of a matplotlib figure's time
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(picture, path)


def save_figure(fig, path):
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def sample_digits(n):
    """n new digits from out_dir/generator.pth, in [0, 1]: samples.pt, samples/, samples.png and
    more. Stopped or refused part way, it leaves the samples from before whole."""
    try:
        G, out = load_generator(Path(out_dir) / "generator.pth", n), Path(out_dir)  # n must fit
    except BadFile as e:
        fail(str(e))
    check_disk(n, out)
    try:
        torch.manual_seed(seed)
        images, labels = torch.empty(n, channels, image_size, image_size), labels_to_draw(G, n)
        for chunk, classes in zip(images.split(2000), labels.split(2000)):  # activations stay small
            drawn = generate(G, torch.randn(len(chunk), G.z_dim), classes)
            chunk.copy_((drawn.view_as(chunk) + 1) / 2)
        save_samples(images, labels, G, out)
    except KeyboardInterrupt:
        fail("stopped: the samples from before are as they were", code=130)
    finally:  # what a stopped or refused write left aside goes
        shutil.rmtree(out / "samples.tmp", ignore_errors=True)


def save_samples(images, labels, G, out):
    # interpolation.png: lines through the noise space; smooth changes mean G learned digits.
    preview, per_row, drawn = images[:256], math.ceil(min(len(images), 256) ** 0.5), labels.unique()
    if len(drawn) > 1:  # a conditional G's classes in turn: a row a class, up to 8 each
        per_row = min(8, len(images) // len(drawn))
        preview = torch.cat([images[labels == k][:per_row] for k in drawn])
    save_pngs(images, labels, G.classes, out / "samples.tmp")  # aside, then in place with the rest
    if G.classes:  # each sample's class, beside them
        atomic_save({"labels": labels, "classes": G.classes}, out / "samples_labels.pt")
    atomic_save(images, out / "samples.pt")
    with writing(out / "samples"):
        shutil.rmtree(out / "samples", ignore_errors=True)
        (out / "samples.tmp").rename(out / "samples")
    ends, t = torch.randn(2, 8, 1, G.z_dim), torch.linspace(0, 1, 10).view(1, 10, 1)
    rows = labels[torch.arange(8) % len(labels)].repeat_interleave(10)  # each line keeps a class
    line = generate(G, torch.lerp(ends[0], ends[1], t).view(-1, G.z_dim), rows)
    for name, picture in (("samples.png", make_grid(preview, per_row)),
                          ("interpolation.png", grid(line, nrow=10))):
        save_png(picture, out / name)
    shown = f"{per_row} a class" if len(drawn) > 1 else f"the first {len(preview)}"
    print(f"wrote {len(images)} samples to {out / 'samples.pt'} ({images.nbytes / 1e6:.1f} MB) and "
          f"{out / 'samples'}/, {shown} to samples.png, and interpolation.png")


def save_pngs(images, labels, classes, folder):
    """Each sample as a PNG: all in one folder (what pytorch-fid and torch-fidelity read), or with
    classes a folder each, numbered in G's order (what ImageFolder reads: its targets are G's)."""
    with writing(folder):
        digits = len(str(len(classes) - 1))
        wheres = [folder / f"{k:0{digits}d}_{name.replace('/', '-')}"
                  for k, name in enumerate(classes)]
        for y in labels.unique().tolist() if classes else ():  # the classes drawn
            wheres[y].mkdir(parents=True)
        folder.mkdir(exist_ok=True)
        for start in range(0, len(images), 2000):  # a chunk at a time: no float copy of them all
            pixels = images[start: start + 2000].mul(255).round_().to(torch.uint8)
            for i, (picture, y) in enumerate(zip(pixels.permute(0, 2, 3, 1).numpy(),
                                                 labels[start: start + 2000].tolist()), start):
                picture = picture[..., 0] if channels == 1 else picture  # H x W gray, H x W x 3
                Image.fromarray(picture).save((wheres[y] if classes else folder) / f"{i}.png")


def check_disk(n, out):
    """Refuse, before writing a million PNGs, samples that would not fit on the disk."""
    need = n * (channels * image_size ** 2 * 4 + 4096)  # samples.pt, and a PNG a block at least
    free = shutil.disk_usage(next(p for p in (out, *out.parents) if p.exists())).free
    if need > free:
        fail(f"{n} samples need about {need / 1e9:.1f} GB on disk (samples.pt and a PNG each), "
             f"more than the {free / 1e9:.1f} GB free: try --sample={free * n // need}")


def check_labels(G, labels):  # for your own code: a ValueError in words, not torch's IndexError
    classes = G.embed.num_embeddings if G.embed is not None else 0
    if classes and (labels is None or not 0 <= int(labels.min()) <= int(labels.max()) < classes):
        raise ValueError(f"this generator is conditional: pass labels, a class number from 0 to "
                         f"{classes - 1} for each noise vector")


def labels_to_draw(G, n):
    """The class of each sample: --label's, or each class in turn; all 0 for an unconditional G."""
    if label and not G.classes:
        fail(f"--label={label}: this generator draws no classes "
             f"(it trained with conditional=False)")
    if not label:
        return torch.arange(n) % max(1, len(G.classes))
    label_ = unicodedata.normalize("NFC", label)  # as the folder names are
    numbered = label.isascii() and label.isdigit() and int(label) < len(G.classes)  # not "²"
    if label_ not in G.classes and (not numbered or all(c.isdigit() for c in G.classes)):
        fail(f"no class {label!r}: the classes are {', '.join(G.classes)}" + ("" if all(
            c.isdigit() for c in G.classes) else " (or their numbers, from 0)"))
    k = G.classes.index(label_) if label_ in G.classes else int(label)  # a name always wins
    print(f"drawing class {k}, {G.classes[k]!r}")
    return torch.full((n,), k)


# ---- the data's file formats: IDX files, torchvision's download, folders of pictures ----
def read_idx(path):
    """An IDX file (.gz or not) as a uint8 tensor: a magic number, the sizes, then the bytes."""
    try:
        with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        fail(f"{path} is unreadable or corrupt ({e})")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (2049, 2051):
        fail(f"{path} is not an IDX file: magic number {magic}, expected 2049 or 2051")
    shape = [int.from_bytes(raw[4 * i: 4 * i + 4], "big") for i in range(1, magic - 2047)]
    if len(raw) != (size := 4 + 4 * len(shape) + math.prod(shape)):
        fail(f"{path} is truncated or corrupt: {len(raw)} bytes, its header says {size}")
    pixels = torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=4 + 4 * len(shape))
    return pixels.view(shape)


def find_idx(folder, split="train", kind="images"):
    """The IDX file of one split in a folder that holds the files directly, or None."""
    dims = 1 if kind == "labels" else 3
    name = f"{'t10k' if split == 'test' else 'train'}-{kind}-idx{dims}-ubyte"
    return next((p for p in (Path(folder, name), Path(folder, name + ".gz")) if p.is_file()), None)


def idx_file(split, kind="images"):  # in data_dir itself, or where torchvision downloads to
    raw = Path(data_dir) / dataset / "raw"
    return find_idx(data_dir, split, kind) or find_idx(raw, split, kind)


def load_digits(split="train"):
    """MNIST's or Fashion-MNIST's 28 x 28 images, from IDX files in data_dir or
    data_dir/DATASET/raw, gzipped or not. Where there are none, torchvision downloads them there
    (mirrors, md5 checks)."""
    raw = Path(data_dir) / dataset / "raw"
    if not idx_file(split):
        made = [d for d in (raw, *raw.parents) if not d.exists()]  # deepest first
        try:
            getattr(datasets, dataset)(data_dir, train=split == "train", download=True)
        except Exception as e:
            for d in made:  # leave no empty folders behind
                with contextlib.suppress(OSError):
                    d.rmdir()
            reason = str(e).strip().splitlines()[-1][:120] if str(e).strip() else type(e).__name__
            fail(f"{dataset} is not in {raw} and could not be downloaded ({reason}). Put "
                 f"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                 f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in {raw}/, "
                 f"or pass --data_dir=A_FOLDER_HOLDING_THEM")
    images = read_idx(idx_file(split))
    check_memory(len(images))
    return images


def load_labels(split, count):
    """The class of each image, from the label file beside the images, and the classes' names;
    all 0, and no names, where the run is not conditional."""
    if not conditional:
        return torch.zeros(count, dtype=torch.long), []
    path = idx_file(split, "labels")
    if path is None:
        fail(f"conditional needs each image's class, and there is no {split} label file "
             f"(*-labels-idx1-ubyte) in {data_dir} or {Path(data_dir) / dataset / 'raw'}")
    labels = read_idx(path).long()
    if labels.shape != (count,) or labels.max() >= 10:
        fail(f"{path} does not match the images: {len(labels)} labels for {count} images, "
             f"classes 0 to {int(labels.max())}")
    return labels, class_names(dataset)


def class_names(dataset):  # what each label number of MNIST or Fashion-MNIST means
    return datasets.FashionMNIST.classes if dataset == "FashionMNIST" else list("0123456789")


PICTURES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")  # Pillow reads them


def load_folder(folder):
    """Every picture under a folder, class subfolders and all, decoded once; broken ones skipped."""
    if not folder.is_dir():
        fail(f"data_dir {folder} does not exist: point --data_dir at a folder of pictures")
    paths, seen, unread = [], set(), []
    for root, folders, names in os.walk(folder, followlinks=True, onerror=unread.append):
        if os.path.realpath(root) in seen:  # a link back up: read already, and it would loop
            folders[:] = []
            continue
        seen.add(os.path.realpath(root))
        folders[:] = [f for f in folders if not f.startswith(".")]  # .ipynb_checkpoints, .git
        paths += [Path(root, name) for name in names if Path(name).suffix.lower() in PICTURES
                  and not name.startswith(".")]  # macOS's ._ files, hidden copies
    paths.sort()
    if not paths:
        fail(f"{unread[0].filename} cannot be read ({unread[0].strerror})" if unread else
             f"{folder} holds no pictures ({', '.join(PICTURES)}), in it or in its subfolders")
    check_memory(len(paths))

    def class_of(path):  # its subfolder's name, however the OS spells it: é is é
        return unicodedata.normalize("NFC", path.relative_to(folder).parts[0])

    classes = sorted({class_of(p) for p in paths if p.parent != folder})
    if conditional and any(p.parent == folder for p in paths):  # ImageFolder's layout
        fail(f"{next(p for p in paths if p.parent == folder)} is in no class: with conditional, "
             f"each picture goes in a subfolder of {folder} named after its class")
    images, labels, broken = [], [], []
    for path in tqdm(paths, desc=f"decoding {len(paths)} pictures", leave=False):
        try:
            images.append(fit(read_picture(path)[None]))
            labels.append(classes.index(class_of(path)) if conditional else 0)
        except (OSError, ValueError, Image.DecompressionBombError) as e:  # say why in words
            said = {PermissionError: "permission denied", UnidentifiedImageError: "not a picture"}
            why = next((w for kind, w in said.items() if isinstance(e, kind)), str(e).strip()[:80])
            broken.append(f"{path} ({'truncated' if 'truncated' in why else why or repr(e)})")
    if len(broken) == len(paths):
        fail(f"none of the {len(paths)} pictures in {folder} could be read; the first: {broken[0]}")
    if broken:
        tqdm.write(f"basic_gan.py: warning: skipped {count(len(broken), 'unreadable picture')} of "
                   f"{len(paths)}; the first: {broken[0]}", file=sys.stderr)
    return (torch.cat(images), *drop_empty(labels, classes)) if conditional else (
        torch.cat(images), torch.tensor(labels), [])


def drop_empty(labels, classes):
    """A class none of whose pictures could be read is no class: G would learn nothing of it."""
    if empty := [c for k, c in enumerate(classes) if k not in set(labels)]:
        tqdm.write(f"basic_gan.py: warning: no class for {', '.join(empty)}: not one of its "
                   f"pictures could be read", file=sys.stderr)
        kept = [c for c in classes if c not in empty]
        labels, classes = [kept.index(classes[y]) for y in labels], kept
    return torch.tensor(labels), classes


def read_picture(path):
    """As a viewer shows it: upright by EXIF, 16 bits scaled to 8, alpha on white; uint8 CxHxW."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # big, but resized
        image = Image.open(path)
    with image:
        image = ImageOps.exif_transpose(image)
        gray = Image.getmodebase(image.mode) == "L"  # 1, L, LA, I, I;16, F: gray, at any depth
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16 or 32 bits a pixel: to 8
            image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
        if "A" in image.mode or "transparency" in image.info:
            image = Image.alpha_composite(Image.new("RGBA", image.size, "white"),
                                          image.convert("RGBA"))
        image = image.convert("L" if gray else "RGB")
        pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        return pixels.view(image.height, image.width, -1).permute(2, 0, 1)


def fit(images):
    """uint8 N x C x H x W as channels x image_size²: gray or colour, centre square, resized."""
    if images.shape[1] != channels:
        images = images.expand(-1, 3, -1, -1) if channels == 3 else TF.rgb_to_grayscale(images)
    side = min(images.shape[-2:])
    images = TF.center_crop(images, [side, side])
    if side != image_size:
        images = TF.resize(images, [image_size, image_size], antialias=True)
    return images.contiguous()


def check_memory(count, size=1):
    """Refuse, before decoding or drawing, images that would not fit in half the free memory."""
    need, free = count * channels * image_size ** 2 * size, available_memory()
    if need > free / 2:
        side = int((free / 2 / count / channels) ** 0.5)  # what would fit
        fits = f"sample={int(free / 2 / need * count)}" if size > 1 else f"image_size={side}"
        fail(f"{count} images of {channels} x {image_size} x {image_size} need {need / 1e9:.1f} "
             f"GB, more than half the {free / 1e9:.1f} GB available: try --{fits}")


def available_memory():
    with contextlib.suppress(OSError, TypeError):
        return int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text())[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):  # macOS: all of it
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return math.inf


# ---- files: written whole or not at all, one run per folder, checkpoints ----
def fail(message, code=2):  # one clear line instead of a traceback (and on a line of its own)
    tqdm.write(f"basic_gan.py: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def config():
    return {k: globals()[k] for k in DEFAULTS}


def count(n, thing):  # 1 epoch, 2 epochs
    return f"{n} {thing}{'s' * (n != 1)}"


def atomic_save(obj, path):
    """To a temp file, on to the disk, then renamed: a kill mid-save keeps the old file whole."""
    with writing(path):
        with open(f"{path}.tmp", "wb") as f:  # straight to the file: no second copy in memory
            try:
                torch.save(obj, f)
            except RuntimeError as e:  # torch's zip writer hides a full disk's OSError behind it
                raise (e.__context__ if isinstance(e.__context__, OSError) else e) from None
            f.flush()
            os.fsync(f.fileno())
        os.replace(f"{path}.tmp", path)


@contextlib.contextmanager
def writing(path):
    """A write the OS refuses (a full disk, say) ends in one line, TensorBoard's thread's too."""
    thread_hook = threading.excepthook
    threading.excepthook = lambda e: None if issubclass(e.exc_type, OSError) else thread_hook(e)
    try:
        yield
    except OSError as e:
        shutil.rmtree(f"{path}.tmp", ignore_errors=True)  # samples.tmp/, a folder, goes whole
        Path(f"{path}.tmp").unlink(missing_ok=True)
        safe = "The samples from before are as they were" if sample else checkpoint_left()
        fail(f"could not write {path}: {e.strerror or e}. {safe}", code=1)
    finally:
        threading.excepthook = thread_hook


def checkpoint_left():
    path = Path(out_dir) / "checkpoint.pt"
    with contextlib.suppress(Exception):
        step = torch.load(path, map_location="cpu", weights_only=True)["run"]["step"]
        return f"{path} (step {step}) is intact"
    return f"There is no intact {path} to resume from"


@contextlib.contextmanager
def only_this_run_in(folder):
    """One run a folder. The OS lock dies with its process, so a killed run leaves none behind."""
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    with writing(folder):  # /proc/x, say: the OS says no in one line
        folder.mkdir(parents=True, exist_ok=True)
    had_lock = (folder / ".lock").exists()
    with open(folder / ".lock", "a+") as lock:
        try:
            import fcntl  # Windows has none, and there no lock is taken
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except OSError:
            lock.seek(0)
            fail(f"{folder} is in use by another run (process {lock.read() or '?'}): let it "
                 f"finish, stop it, or set another --out_dir")
        lock.truncate(0)
        print(os.getpid(), file=lock, end="", flush=True)
        for name in ("checkpoint.pt", "generator.pth", "discriminator.pth", "samples.pt"):
            Path(folder, f"{name}.tmp").unlink(missing_ok=True)  # a kill mid-save left it
        try:
            yield
        except BaseException:  # a refusal, say: its lock, and the folders it made empty, go again
            if not had_lock:
                (folder / ".lock").unlink(missing_ok=True)
            for p in made if made and not os.listdir(folder) else ():
                p.rmdir()
            raise


class BadFile(ValueError):
    """A file that is missing, corrupt or not basic_gan's: in your own code, an error in words."""


def load(path, what):
    if not Path(path).is_file():
        raise BadFile(f"no {Path(path).name} in {Path(path).parent}: train first, "
                      f"or set --out_dir to a run")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BadFile(f"{path} is corrupt or not a basic_gan {what} ({type(e).__name__}); "
                      f"delete it or set --out_dir") from None


def load_generator(path, n=0):
    """A Generator rebuilt from a generator.pth, which knows its widths; n images of it must fit."""
    saved = load(path, "generator")
    try:
        shape = {k: saved["config"].get(k, DEFAULTS[k]) for k in ("channels", "image_size")}
        pixels = shape["channels"] * shape["image_size"] ** 2
        classes = saved.get("classes", []) if saved["config"].get("conditional") else []
        G = Generator(saved["config"]["z_dim"], tuple(saved["config"]["g_widths"]), pixels,
                      len(classes))
        G.load_state_dict(saved["state_dict"])
        G.classes = classes  # their names, which --label may use
        settled(G, saved["config"].get("seed", 0))  # an epoch's save, before the last one, too
        globals().update(shape)  # the grids and samples follow the generator's own shape
        APPLIED.update(shape)  # which a later main() takes for no edit of yours
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        raise BadFile(f"{path} is not a basic_gan generator ({str(e).splitlines()[0]})") from None
    check_memory(n, 4)
    return G


CHECKPOINT_FORMAT = 5  # 5: --conditional D's spread within each class; 4: D sees the batch's
# spread; 3: D's head apart from its features; 2: the data order from (seed, epoch)
PARTS = ("G", "D", "G_ema", "opt_g", "opt_d")
# On --resume these may change: how long and where it goes on. The rest would make another run.
NOT_THE_RUN = ("epochs", "data_dir", "max_steps", "info_step", "device", "precision", "out_dir",
               "resume", "sample", "label")


def save_checkpoint(run, step, *parts):
    where = {"data_dir": str(Path(data_dir).absolute())}  # so a resume from another folder finds it
    kept = {k: v for k, v in vars(run).items()
            if k not in ("device", "timer", "autocast", "writer")}
    rng = gpu_rng(run.device)  # only the GPU it runs on: no context opened on the others
    atomic_save(moved({"format": CHECKPOINT_FORMAT, "config": {**config(), **where},
                       "run": {**kept, "step": step},
                       **{name: part and part.state_dict() for name, part in zip(PARTS, parts)},
                       "rng": torch.get_rng_state(), "device_rng": rng and (
                           run.device.type, rng.get_rng_state(run.device))}, "cpu"),
                Path(out_dir) / "checkpoint.pt")  # on the CPU: it loads on a machine with no GPU


def gpu_rng(dev):  # where z is drawn on a GPU, its own random stream: CUDA's or MPS's
    return {"cuda": torch.cuda, "mps": torch.mps}.get(dev.type)


def moved(obj, dev):
    """The tensors in nested dicts, lists and tuples, on dev: a checkpoint's, to the CPU, back."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dev)
    if isinstance(obj, dict):
        return {k: moved(v, dev) for k, v in obj.items()}
    return type(obj)(moved(v, dev) for v in obj) if isinstance(obj, (list, tuple)) else obj


def keep_the_run_there():  # a new run never replaces another's weights: refused, with ways on
    there = [name for name in ("checkpoint.pt", "generator.pth") if (Path(out_dir) / name).exists()]
    if there:
        base = Path(out_dir)
        base = base if base.name not in ("", ".", "..") else base.resolve()
        free = next(f"{base}_{i}" for i in range(2, 10**6) if not Path(f"{base}_{i}").exists())
        go_on = f"go on with it with {resume_command()}, or " if there[0] == "checkpoint.pt" else ""
        fail(f"{out_dir} holds a run ({there[0]}) that a new one would replace: {go_on}start the "
             f"new one with --out_dir={shlex.quote(free)}")


def restore_config(overrides):
    """--resume: the run's constants, then the command line's; None if it has nothing to do."""
    path = Path(out_dir) / "checkpoint.pt"
    try:
        ckpt = load(path, "checkpoint")
    except BadFile as e:
        fail(str(e))
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        fail(f"{path} was made by an older basic_gan: start a new run with another --out_dir, "
             f"or resume it with the basic_gan.py that made it")
    saved = {**DEFAULTS, **ckpt["config"]}  # a constant newer than the checkpoint: as written
    for k, value in overrides.items():
        if k not in NOT_THE_RUN and value != saved[k]:
            fail(f"{path} was made with {k}={saved[k]!r}: resuming with --{k}={value!r} would make "
                 f"another run. Leave it out, or start a new run with another --out_dir")
    per_call = ("out_dir", "resume", "sample", "max_steps", "label")  # said anew every command
    globals().update({k: v for k, v in saved.items() if k in DEFAULTS and k not in per_call})
    globals().update(overrides)
    steps_per_epoch, total, last, _ = plan(ckpt["run"]["data"]["images"])
    step, made_for = ckpt["run"]["step"], ckpt["config"]["epochs"]
    if step >= last and max_steps and step >= max_steps:  # trained all it was asked to: say so
        print(f"{out_dir} is at step {step}: --max_steps={max_steps} leaves nothing to do")
    elif step > total:  # --epochs=100, say, on a run stopped early in a 400-epoch schedule
        go_on = resume_command() if made_for * steps_per_epoch > step else resume_command(
            f"--epochs={2 * math.ceil(step / steps_per_epoch)}")  # its own length, or twice this
        print(f"{out_dir} is at step {step}, past the {total} steps of {count(epochs, 'epoch')}: "
              f"nothing to do. To go on: {go_on}")
    elif step >= last:
        print(f"{out_dir} has finished its {count(epochs, 'epoch')} ({step} steps). To train it "
              f"longer: {resume_command(f'--epochs={2 * epochs}')}. The lr comes back to where "
              f"a {2 * epochs}-epoch schedule has it now and falls to 0 again by its end")
    elif epochs != made_for:  # longer or shorter than it was made for: the lr follows the new one
        print(f"note: {out_dir} was made for {count(made_for, 'epoch')}; it goes on for "
              f"{count(epochs, 'epoch')} in all, its lr as that schedule has it")
    return ckpt if step < last else None


# ---- the command line, generated from the constants, and the checks of their values ----
def constants_cell():
    """The names the constants cell sets, from its text: in this file or pasted cell, or where a
    notebook ran the cells one by one, the latest it ran (IPython keeps cells' text in
    linecache)."""
    here = "".join(linecache.getlines(constants_cell.__code__.co_filename))
    for text in (here, *("".join(e[2]) for e in reversed(linecache.cache.values()) if len(e) > 2)):
        if found := re.search(r"^# %% the constants.*?$(.*?)(?=^# %%|\Z)", text, re.M | re.S):
            return [t.id for node in ast.parse(found[1]).body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name) and t.id.islower()], found[1]
    return [], ""  # not at hand: the constants are every lowercase name of a plain type


CONSTANT_NAMES, CONSTANTS_TEXT = constants_cell()  # read once, where this code is run
if CONSTANT_NAMES:
    DEFAULTS = {k: v for k, v in DEFAULTS.items() if k in CONSTANT_NAMES}


def parse_args(argv):
    """{name: value} of each constant the command line sets: --name=value or --name value."""
    source = "".join(linecache.getlines(parse_args.__code__.co_filename))  # a file, or a cell
    comments = dict(re.findall(r"^(\w+) *=.*?# (.*)$", CONSTANTS_TEXT, re.M))
    parser = argparse.ArgumentParser(usage="basic_gan.py [--name=value ...]",
                                     description=ast.get_docstring(ast.parse(source)) or "",
                                     formatter_class=argparse.RawTextHelpFormatter,
                                     argument_default=argparse.SUPPRESS,  # only what is given
                                     allow_abbrev=False)  # so --epoch=3 is an error, not --epochs

    def one_line(message):  # argparse's errors as one line and exit 2, without the usage block
        message = message.replace("expected one argument", "needs a value")
        fail(re.sub(r"^argument (--\w+): ", r"\1 ", message))  # "--epochs needs a value"
    parser.error = one_line

    def literal(text):  # 3, 1e-4, (64, 128) or True as the value it spells; check_config checks
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            spelled = text.capitalize() if text.lower() in ("true", "false") else text
            return ast.literal_eval(spelled)
        return text
    for key, default in DEFAULTS.items():
        flag = type(default) is bool  # a bare --resume means --resume=True
        parser.add_argument(f"--{key}", type=str if isinstance(default, (str, Path)) else literal,
                            metavar="BOOL" if flag else "",
                            nargs="?" if flag else None, const=True if flag else None,
                            help=f"{comments.get(key, '')} (default: {default!r})")
    argv = [re.sub(r"^--(\w[\w-]*)", lambda m: "--" + m[1].replace("-", "_"), a) for a in argv]
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        key = unknown[0][2:].partition("=")[0]
        if not unknown[0].startswith("--") or not key:
            fail(f"unexpected argument {unknown[0]!r}: every option is --name=value (see --help)")
        close = difflib.get_close_matches(key, DEFAULTS, n=1)
        hint = f"; did you mean --{close[0]}?" if close else " (see --help)"
        fail(f"unknown option --{key}{hint}")
    return vars(args)


def integer(v):  # not a float, and not True or False
    return type(v) is int


def number(v):
    return type(v) in (int, float) and math.isfinite(v)


RULES = [  # (constants, a test each must pass, what it must be), for the file and the command line
    (("epochs", "z_dim", "info_step", "r1_every", "n_critic"), lambda v: integer(v) and v > 0,
     "an int > 0"),
    (("batch_size",), lambda v: integer(v) and v > 1, "an int >= 2: BatchNorm needs two images"),
    (("max_steps", "sample"), lambda v: integer(v) and v >= 0, "an int >= 0"),
    (("seed",), lambda v: integer(v) and -2**63 <= v < 2**64, "an int in [-2**63, 2**64), torch's"),
    (("lr",), lambda v: number(v) and v > 0, "a finite number > 0"),
    (("r1_gamma",), lambda v: number(v) and v >= 0, "a finite number >= 0"),
    (("beta1", "beta2", "ema_decay"), lambda v: number(v) and 0 <= v < 1, "a number in [0, 1)"),
    (("lr_decay",), lambda v: number(v) and 0 <= v <= 1, "a number in [0, 1], a share of training"),
    (("g_widths", "d_widths"), lambda v: type(v) is tuple and v and all(integer(w) for w in v)
     and min(v) > 0, "a non-empty tuple of ints > 0, like (64, 128)"),
    (("resume", "conditional"), lambda v: type(v) is bool, "True or False"),
    (("label",), lambda v: type(v) is str, "a class's name or number, in quotes"),
    (("data_dir", "out_dir"), lambda v: type(v) is str and v.strip() != "", "a folder, in quotes"),
    (("device",), lambda v: type(v) is str and (v in ("auto", "cpu", "mps")
                                                or re.fullmatch(r"cuda(:(0|[1-9]\d*))?", v)),
     "one of auto, cpu, cuda, cuda:N (N = 0, 1, ...), mps"),
    (("precision",), lambda v: v in ("auto", "fp32", "bf16"), "one of auto, fp32, bf16"),
    (("dataset",), lambda v: v in ("MNIST", "FashionMNIST", "folder"),
     "one of MNIST, FashionMNIST, folder"),
    (("image_size",), lambda v: integer(v) and v >= 4, "an int, at least 4 pixels"),
    (("channels",), lambda v: integer(v) and v in (1, 3), "1 (gray) or 3 (colour)")]


def as_meant(values):
    """Constants as a person writes them, as the script means them: [64] for (64,), ~ for home."""
    return {k: tuple(v) if type(v) is list else os.path.expanduser(v)
            if k.endswith("_dir") and isinstance(v, (str, Path)) else v for k, v in values.items()}


def check_config():
    """Impossible values, refused before any data or output is touched."""
    known = {k for keys, _, _ in RULES for k in keys}
    for k in sorted(DEFAULTS.keys() - known if CONSTANT_NAMES else ()):
        close = difflib.get_close_matches(k, known, n=1)  # epoch = 3 added to the cell, say
        fail(f"{k}, set in the constants cell, is none of basic_gan's constants"
             + (f": did you mean {close[0]}?" if close else ""))
    for keys, ok, wanted in RULES:
        for k in (k for k in keys if not ok(globals()[k])):
            fail(f"{k} must be {wanted}, got {globals()[k]!r}")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.startswith("cuda") and gpus and int(device[5:] or 0) >= gpus:
        fail(f"device {device!r} was asked for, but torch sees {count(gpus, 'GPU')}: use "
             f"--device=cuda:0 to cuda:{gpus - 1}")
    if device.startswith("cuda") and (why_not := cuda_problem(int(device[5:] or 0))):
        fail(f"device {device!r} was asked for, but {why_not}; or use --device=cpu")
    if device.startswith("cuda") and not gpus:
        fail(f"device {device!r} was asked for, but torch sees no CUDA GPU; use --device=cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        fail("device 'mps' was asked for, but this machine has no MPS; use --device=cpu")
    dev, prec = pick_device()
    if dev.type == "cuda" and prec == "bf16" and torch.cuda.get_device_capability(dev) < (8, 0):
        fail(f"precision 'bf16' on the {torch.cuda.get_device_name(dev)} (compute capability "
             f"{'.'.join(map(str, torch.cuda.get_device_capability(dev)))}) is emulated, and slow: "
             f"GPUs have it from 8.0 (Ampere) on. Use --precision=auto (fp32, with TF32 where "
             f"it can)")
    for k in ("data_dir", "out_dir"):
        try:
            os.stat(globals()[k])
        except (FileNotFoundError, NotADirectoryError):
            pass  # made, or refused in words, further on
        except OSError as e:  # 300 characters, say: the OS's "File name too long", in one line
            fail(f"{k} {globals()[k][:40]!r}... cannot be used: {e.strerror}")
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        fail(f"data_dir {data_dir!r} is a file, not a folder")
    out = Path(out_dir).absolute()
    existing = next(p for p in (out, *out.parents) if p.exists())  # the folder it will be made in
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        fail(f"out_dir {out_dir!r} is not writable (checked {existing})" + (": to draw from it, "
             "copy its generator.pth to a folder you can write to, and set --out_dir to that"
             if sample else ""))


APPLIED, YOURS = {}, {}  # the constants as basic_gan last left them; those you set since, kept


def main(argv=None):
    """The constants (the file's, a later cell's, a resumed run's, the command line's), then sample
    or train."""
    script = globals().get("__file__")  # python basic_gan.py or %run: sys.argv is the user's;
    if argv is None:  # imported or pasted into a notebook cell, it is the kernel's own
        argv = sys.argv[1:] if script and Path(sys.argv[0]).name == Path(script).name else []
    try:
        try:
            return sample_or_train(argv)
        except KeyboardInterrupt:  # outside the loop, which stops between steps: decoding, say
            fail("stopped by Ctrl-C", code=130)
    except SystemExit as e:
        if not in_notebook():
            raise  # a script's exit code
        if e.code:  # a notebook: the cell stops there, with the one line and no traceback
            raise Stopped(e.code) from None
    finally:
        APPLIED.update(config())
        if (names := notebook_names()) is not None:
            names.update(config())  # what this call left, so a later cell's edit stands out


def notebook_names():
    """After %run, the notebook's own names: %run copied this file's there, main() among them, and
    a later cell sets a constant there, not here. None where the file was imported or pasted."""
    if in_notebook():
        names = sys.modules["IPython"].get_ipython().user_ns
        ran = names is not globals() and "__name__" not in globals()  # %run drops __name__
        return names if ran and names.get("main") is main else None


def sample_or_train(argv):
    if (names := notebook_names()) is not None:  # lr = 1e-3 in a cell after %run: yours
        globals().update({k: names[k] for k in DEFAULTS if k in names})
    for k, v in config().items():  # set in a later cell, or as basic_gan.lr = ...: yours, kept
        if v != APPLIED.get(k, DEFAULTS[k]):
            # the constants cell run again: as written; else a value of yours, kept
            YOURS.pop(k, None) if v == DEFAULTS[k] else YOURS.update({k: v})
    if YOURS:
        print(f"note: taking {', '.join(f'{k}={v!r}' for k, v in YOURS.items())}, set after the "
              f"constants cell")
    overrides = as_meant({**YOURS, **parse_args(argv)})
    globals().update(as_meant({**DEFAULTS, **overrides}))
    check_config()
    if sample:
        return sample_digits(sample)  # None, so a notebook cell prints no tensor
    if "label" in overrides:
        fail("--label chooses the class --sample draws; training learns them all: leave it out")
    checkpoint = restore_config(overrides) if resume else None
    check_config()  # again, where a resumed run's constants came back
    if not resume or checkpoint:
        return train(checkpoint)


class Stopped(Exception):
    def _render_traceback_(self):  # what IPython shows instead of a traceback: nothing more
        return []


def in_notebook():
    return "IPython" in sys.modules and sys.modules["IPython"].get_ipython() is not None


# %% run it: python basic_gan.py, %run basic_gan.py, or this cell in a notebook
if __name__ == "__main__":
    main()
