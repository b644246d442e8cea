"""Time the textbook GAN loop against basic_gan's own training step, side by side in one process.

    python benchmarks/speed.py                 # CPU or GPU, whichever basic_gan would pick
    python benchmarks/speed.py --steps=300 --json=speed.jsonl
    python benchmarks/speed.py --against=../old/basic_gan.py   # another version's step,
                                                               # in the same rounds

Both use the same Generator/Discriminator widths, batch size and number of steps, after a warm-up.
  textbook   torchvision DataLoader + ToTensor, a fresh G forward for each of the D and G steps,
             D's weights get gradients in G's step, plain Adam; as in the seed course
  basic_gan  basic_gan.train_step with the default constants, as its loop runs it (D learns on
             every step, G on every n_critic-th, R1 on every r1_every-th, then, on G's steps, the
             EMA of G), its uint8 images batched by index, with no host sync between reports
The rounds alternate between the two and the best of each is kept, since this machine is noisy.
It also times the data path alone and each precision: fp32, and bf16 (a few steps only, where the
CPU lacks native bf16, to show why basic_gan never picks it there).
Data: --data_dir (a folder of IDX files, or a torchvision MNIST root); else the real test digits
in ../shared tiled to 60k; else random pixels (timings do not depend on the pixels).
"""
import argparse
import importlib.util
import itertools
import json
import platform
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
import basic_gan  # noqa: E402
from idx import real_mnist_root, write_dataset  # noqa: E402


def fail(message):
    print(f"speed.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def textbook_loader(root):
    data = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    return DataLoader(data, batch_size=basic_gan.batch_size, shuffle=True, drop_last=True)


def textbook_steps(dev, loader):
    """The seed course's loop: two G forwards, D not frozen, no sync avoided, nothing fused."""
    G = basic_gan.Generator(basic_gan.z_dim, basic_gan.g_widths).to(dev)
    D = basic_gan.Discriminator(basic_gan.d_widths).to(dev)
    opt_g = torch.optim.Adam(G.parameters(), lr=basic_gan.lr)
    opt_d = torch.optim.Adam(D.parameters(), lr=basic_gan.lr)
    criterion = nn.BCEWithLogitsLoss()
    batches = itertools.cycle(loader)

    def run(n):
        for _ in range(n):
            real, _ = next(batches)
            real = real.view(len(real), -1).to(dev)
            opt_d.zero_grad()
            fake = G(torch.randn(len(real), basic_gan.z_dim, device=dev))
            (fake_logits, _), (real_logits, _) = D(fake.detach()), D(real)  # D: a logit, no classes
            d_loss = (criterion(fake_logits, torch.zeros_like(fake_logits))
                      + criterion(real_logits, torch.ones_like(real_logits))) / 2
            d_loss.backward()
            opt_d.step()
            opt_g.zero_grad()
            fake_logits, _ = D(G(torch.randn(len(real), basic_gan.z_dim, device=dev)))
            g_loss = criterion(fake_logits, torch.ones_like(fake_logits))
            g_loss.backward()
            opt_g.step()
            d_loss.item(), g_loss.item()  # the textbook loop keeps running means with .item()
    return run


def basic_gan_batches(images, dev):
    """basic_gan's data path: its DataLoader, one gather from the uint8 images per batch."""
    for epoch in itertools.count():
        labels = torch.zeros(len(images), dtype=torch.long, device=dev)
        for batch, _ in basic_gan.make_dataloader(images, labels, epoch):
            yield batch


def basic_gan_steps(dev, prec="fp32", classes=0, bg=basic_gan):
    """basic_gan's step as its loop runs it; with classes, the conditional one, on random labels
    (the cost is the same). bg: basic_gan, or another version of it (--against)."""
    batches = basic_gan_batches(basic_gan.load_images("train")[0].to(dev), dev)
    G, D, G_ema, opt_g, opt_d = bg.make_models(dev, classes)
    labels = torch.randint(0, classes, (basic_gan.batch_size,), device=dev) if classes else None

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16")

    every = getattr(bg, "n_critic", 1)  # a version from before G learned on every n_critic-th step
    step = [0]

    def run(n):
        # train_step returns tensors: no host sync, as in the loop between reports
        for _ in range(n):
            s = step[0]
            learns = {"learn_g": (s + 1) % every == 0} if hasattr(bg, "n_critic") else {}
            bg.train_step(G, D, opt_g, opt_d, basic_gan.to_model_range(next(batches)), labels,
                          use_r1=bg.r1_gamma > 0 and s % bg.r1_every == 0, autocast=autocast,
                          **learns)
            bg.ema_update(G_ema, G, s)
            step[0] += 1
    return run


def load_version(path):
    """Another basic_gan.py (an older commit's, say) as a module of its own, beside this one."""
    spec = importlib.util.spec_from_file_location("basic_gan_against", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def best_seconds(runs, steps, rounds, dev):
    """Warm each up, then time `steps` steps of each in turn, `rounds` times:
    the fastest of each."""
    for run in runs.values():
        run(min(20, steps))
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            sync(dev)
            tic = time.perf_counter()
            run(steps)
            sync(dev)
            best[name] = min(best[name], time.perf_counter() - tic)
    return best


def sync(dev):
    """Wait for the device: a GPU runs what it is given later, so a timer must wait for it."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def data_epoch_seconds(loader, dev, to_float):
    tic = time.perf_counter()
    for batch in loader:
        to_float(batch)
    sync(dev)
    return time.perf_counter() - tic


def hardware(dev):
    if dev.type in ("cuda", "mps"):
        return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "MPS"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return (f"CPU {platform.processor() or platform.machine()}, "
            f"{torch.backends.cpu.get_cpu_capability()}, "
            f"{'native' if native else 'no native'} bf16, {torch.get_num_threads()} threads")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_dir",
                   help="what basic_gan takes: a torchvision root or a folder of IDX files")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="the one basic_gan trains in (auto: as basic_gan picks it)")
    p.add_argument("--steps", type=int, default=200, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="append the numbers as one JSON line to this file")
    p.add_argument("--conditional", action="store_true",
                   help="also time the conditional step (10 classes)")
    p.add_argument("--against", help="another basic_gan.py, its step timed in the same rounds")
    args = p.parse_args(argv)

    tmp = tempfile.TemporaryDirectory()
    if args.steps < 1 or args.rounds < 1:
        fail(f"--steps={args.steps} --rounds={args.rounds}: time at least one step in one round")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", args.device):
        fail(f"--device={args.device}: speed.py times auto, cpu, cuda or mps "
             f"(basic_gan picks its precision there)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device={args.device}, but torch sees no CUDA GPU here: leave it out, "
             f"or pass --device=cpu")
    if args.device == "mps" and not torch.backends.mps.is_available():
        fail("--device=mps, but this machine has no MPS: leave it out, or pass --device=cpu")
    if args.against and not Path(args.against).is_file():
        fail(f"--against={args.against}: no such file; pass another version's basic_gan.py")
    if args.data_dir and not any(basic_gan.find_idx(d)
                                 for d in (args.data_dir, Path(args.data_dir, "MNIST", "raw"))):
        fail(f"{args.data_dir} holds no train-images-idx3-ubyte(.gz): speed.py times 28 x 28 "
             f"digits, from a folder of IDX files or a torchvision MNIST root, "
             f"not a folder of pictures")
    root = None if args.data_dir else real_mnist_root(tmp.name)
    raw = Path(tmp.name) / "MNIST" / "raw"
    # any IDX form basic_gan reads, rewritten as the MNIST root the textbook loader wants
    if args.data_dir:
        basic_gan.data_dir = args.data_dir
        images = basic_gan.load_digits("train")

        def labelled(x):
            return x, torch.zeros(len(x), dtype=torch.uint8)

        root = write_dataset(raw, labelled(images), labelled(images[:10]), gz=False).parents[1]
    if root is None:  # no real digits here: random pixels time the same
        g = torch.Generator().manual_seed(0)

        def pixels(n):
            return (torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8),
                    torch.zeros(n, dtype=torch.uint8))

        root = write_dataset(raw, pixels(60000), pixels(10000), gz=False).parents[1]
    basic_gan.data_dir, basic_gan.device = str(root), args.device
    basic_gan.precision = args.precision
    dev, prec = basic_gan.pick_device()
    torch.set_float32_matmul_precision("high")  # TF32 on GPUs that have it, as training sets it
    torch.manual_seed(0)
    print(f"{hardware(dev)}; basic_gan picks {prec}; batch {basic_gan.batch_size}, "
          f"{args.steps} steps x {args.rounds} rounds")

    old_loader = textbook_loader(str(root))
    images = basic_gan.load_images("train")[0].to(dev)
    new_loader = itertools.islice(basic_gan_batches(images, dev),
                                  len(images) // basic_gan.batch_size)
    old_data = data_epoch_seconds(old_loader, dev, lambda b: b[0].to(dev).view(len(b[0]), -1))
    new_data = data_epoch_seconds(new_loader, dev, basic_gan.to_model_range)
    print(f"data path, one 60k epoch: ToTensor DataLoader {old_data:.2f} s, "
          f"basic_gan's {new_data:.3f} s ({old_data / new_data:.0f}x)")

    runs = {"textbook": textbook_steps(dev, old_loader),
            f"basic_gan {prec}": basic_gan_steps(dev, prec)}
    if args.conditional:  # in the same rounds, so that the ratio of the two is fair
        runs[f"conditional {prec}"] = basic_gan_steps(dev, prec, classes=10)
    if args.against:
        against = load_version(args.against)
        runs[f"against {prec}"] = basic_gan_steps(dev, prec, bg=against)
        if args.conditional:
            runs[f"against conditional {prec}"] = basic_gan_steps(dev, prec, 10, bg=against)
    seconds = best_seconds(runs, args.steps, args.rounds, dev)
    results = {name: args.steps * basic_gan.batch_size / s for name, s in seconds.items()}
    other = "fp32" if prec == "bf16" else "bf16"
    # slow: a few say enough
    few = args.steps if dev.type == "cuda" or prec == "bf16" else min(5, args.steps)
    s = best_seconds({other: basic_gan_steps(dev, other)}, few, 1, dev)[other]
    results[f"basic_gan {other}"] = few * basic_gan.batch_size / s

    steps_per_epoch = 60000 // basic_gan.batch_size
    print(f"{'':24} {'images/s':>10} {'60k epoch':>10} {'vs textbook':>12}")
    for name, ips in results.items():
        epoch_s = steps_per_epoch * basic_gan.batch_size / ips
        print(f"{name:24} {ips:10.0f} {epoch_s:9.1f}s {ips / results['textbook']:11.2f}x")
    if dev.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"peak process memory {peak:.0f} MiB")
    if args.json:
        with open(args.json, "a") as f:
            numbers = {"hardware": hardware(dev), "images_per_s": results,
                       "data_epoch_s": {"totensor": old_data, "basic_gan": new_data}}
            f.write(json.dumps(numbers) + "\n")
    return results


if __name__ == "__main__":
    main()
