"""Levers at equal steps: train basic_gan with one change, for the same number of steps, and score it.

    python benchmarks/levers.py --lever base mbstd g_every_2 "nor1=--r1_gamma=0" --seeds 0 1 2
    python benchmarks/levers.py --lever base adam_beta2_0.9 --steps 4000 --dataset MNIST --data_dir=<digits>
    python benchmarks/levers.py --lever mbstd+adam_beta2_0.9+g_every_2 --steps 5200

A lever is a named change to the file's story (listed in LEVERS below: a patch of its functions or
classes, so basic_gan.py itself stays as it is), several of them joined by +, or NAME=FLAGS, plain
command-line flags. Each run trains the default schedule (40 epochs' lr) in this process, stops
after --steps (4,000 is about a Ctrl-C at 90 s on a 2-core AVX-512 CPU), and quality.py scores
10,000 samples of the generator.pth it saved (the average of G, settled by the last save). Steps, not seconds: this compares what a
change does to learning, free of the machine's drift; the wall time of each run is recorded
beside it, so a change in a step's cost shows too. One JSON line per run goes to --results.
"""
import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO)), sys.path.insert(0, str(REPO / "benchmarks"))
import basic_gan as bg  # noqa: E402
import quality  # noqa: E402
from time_to_quality import cpu_kind  # noqa: E402


class BatchSpread(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018): the batch's mean feature spread, as one
    more feature of each image, so D can see a batch of fakes that are too alike."""
    def forward(self, x):
        spread = x.float().std(0, unbiased=False).mean().expand(len(x), 1)  # its gradient summed in fp32
        return torch.cat([x, spread.to(x.dtype)], 1)


def mbstd():
    """D's head also sees the batch's feature spread."""
    Plain = bg.Discriminator
    class Discriminator(Plain):
        def __init__(self, widths, pixels=28 * 28, classes=0):
            super().__init__(widths, pixels, classes)
            self.features.append(BatchSpread())
            self.head = nn.Linear(widths[-1] + 1, 1 + classes)
    bg.Discriminator = Discriminator


def adam_betas(beta2):
    plain = bg.make_models
    def make_models(dev, classes=0):
        G, D, G_ema, opt_g, opt_d = plain(dev, classes)
        for group in opt_g.param_groups + opt_d.param_groups:
            group["betas"] = (group["betas"][0], beta2)
        return G, D, G_ema, opt_g, opt_d
    bg.make_models = make_models


def g_every(k):
    """D learns on every batch, G on every k-th, at k times the lr: D keeps further ahead of G, and
    a step where only D learns costs less (G draws its fakes without a graph, and D is not run
    again for G's loss)."""
    plain, steps = bg.train_step, [0]
    def train_step(G, D, opt_g, opt_d, real, labels=None, use_r1=False, autocast=None):
        steps[0] += 1
        if steps[0] % k:
            return d_step(G, D, opt_d, real, labels, use_r1, autocast)
        for group in opt_g.param_groups:
            group["lr"] *= k  # the loop sets it afresh before every step
        return plain(G, D, opt_g, opt_d, real, labels, use_r1, autocast)
    bg.train_step = train_step


def d_step(G, D, opt_d, real, labels, use_r1, autocast):
    """The first half of basic_gan's train_step: D's update alone."""
    with torch.no_grad(), autocast():
        fake = G(torch.randn(len(real), G.z_dim, device=real.device), labels)
    real.requires_grad_(use_r1)
    with autocast():
        (real_logit, real_classes), (fake_logit, _) = D(real, labels), D(fake, labels)
        losses = {"D_real": bg.criterion(real_logit, torch.ones_like(real_logit)),
                  "D_fake": bg.criterion(fake_logit, torch.zeros_like(fake_logit))}
        d_loss = losses["D_real"] + losses["D_fake"]
        if labels is not None:
            losses["D_class"] = nn.functional.cross_entropy(real_classes, labels)
            d_loss = d_loss + bg.D_CLASS_WEIGHT * losses["D_class"]
    if use_r1:
        losses["R1"] = bg.r1_penalty(real, real_logit.float())
        d_loss = d_loss + bg.r1_every * losses["R1"]
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    losses["D(x)"] = real_logit.detach().sigmoid().mean()
    losses["D(G(z))"] = fake_logit.detach().sigmoid().mean()
    return {name: value.detach() for name, value in losses.items()}  # no "G": the report averages
    # each loss over the steps that have it


LEVERS = {"base": lambda: None, "mbstd": mbstd, "adam_beta2_0.9": lambda: adam_betas(0.9),
          "adam_beta2_0.99": lambda: adam_betas(0.99), "g_every_2": lambda: g_every(2)}


def one_run(lever, seed, args):
    """Train with the lever for args.steps steps of the default schedule; score the average of G."""
    importlib.reload(bg)  # the file as written: no patch of an earlier lever survives
    name, _, flags = lever.partition("=")
    if not flags:
        for part in name.split("+"):  # a stack: each patch on top of the one before
            LEVERS[part]()
    out = Path(args.work) / f"{name}_s{seed}_{args.steps}"
    argv = [*flags.split(), f"--dataset={args.dataset}", f"--data_dir={args.data_dir}", f"--seed={seed}",
            f"--out_dir={out}", f"--max_steps={args.steps}", "--info_step=1000000", *args.flags.split()]
    start = time.perf_counter()
    bg.main(argv)
    wall = time.perf_counter() - start
    _, _, fake = quality.main([str(out / "generator.pth"), f"--dataset={args.dataset}",  # rebuilt by
        f"--data_dir={args.data_dir}", f"--cache={args.cache}", f"--n={args.n}"])  # the patched file
    return {"lever": name, "flags": flags, "dataset": args.dataset, "seed": seed, "steps": args.steps,
            "wall_s": round(wall, 1), "fid": fake["fid"], "is": fake["is"], "min_share": fake["min_share"],
            "cpu": cpu_kind(), "threads": torch.get_num_threads()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lever", nargs="+", default=["base"],
                   help=f"{', '.join(LEVERS)}, several joined by + (mbstd+g_every_2), or NAME=FLAGS")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--dataset", default="FashionMNIST", choices=["MNIST", "FashionMNIST"])
    p.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--flags", default="", help="flags every run gets, e.g. '--batch_size=64'")
    p.add_argument("--work", default="levers", help="each run's out_dir goes under this folder")
    p.add_argument("--results", default="levers.jsonl")
    p.add_argument("--cache", default=str(REPO / "benchmarks" / ".cache"))
    p.add_argument("--n", type=int, default=10000, help="samples quality.py scores")
    args = p.parse_args(argv)
    unknown = [part for lever in args.lever if "=" not in lever for part in lever.split("+")
               if part not in LEVERS]
    if unknown:
        p.error(f"no lever {unknown[0]!r}: {', '.join(LEVERS)}, several joined by +, or NAME=FLAGS")
    points = []
    for seed in args.seeds:
        for lever in args.lever:
            points.append(one_run(lever, seed, args))
            with open(args.results, "a") as f:
                f.write(json.dumps(points[-1]) + "\n")
    for lever in args.lever:
        mine = [q for q in points if q["lever"] == lever.partition("=")[0]]
        print(f"{lever:28} FID " + " / ".join(f"{q['fid']:.2f}" for q in mine) +
              "   wall s " + " / ".join(f"{q['wall_s']:.0f}" for q in mine))
    return points


if __name__ == "__main__":
    main()
