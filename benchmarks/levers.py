"""Levers at equal steps: train basic_gan with one change, for the same number of steps,
and score it.

    python benchmarks/levers.py --lever base no_spread "nor1=--r1_gamma=0" --seeds 0 1 2
    python benchmarks/levers.py --lever base "critic1=--n_critic=1" --steps 6000 \\
        --dataset MNIST --data_dir=<digits>
    python benchmarks/levers.py --lever no_spread+g_class_2 --flags=--conditional

A lever is a named change to the file's story (listed in LEVERS below: a patch of its functions or
classes, so basic_gan.py itself stays as it is), several of them joined by +, or NAME=FLAGS, plain
command-line flags. Each run trains the default schedule (its epochs' lr) in this process, stops
after --steps (6,000 is about a Ctrl-C at 90 s on a 2-core AVX-512 CPU), and quality.py scores
10,000 samples of the generator.pth it saved (the average of G, settled by the last save).
Steps, not seconds: this compares what a change does to learning, free of the machine's drift;
the wall time of each run is recorded beside it, so a change in a step's cost shows too. One JSON
line per run goes to --results.
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


class NoSpread(nn.Module):
    def forward(self, features, labels=None, classes=0):
        return features  # none added


def no_spread():
    """D without the batch's spread: its head sees only each image's own features."""
    Plain = bg.Discriminator

    class Discriminator(Plain):
        def __init__(self, widths, pixels=28 * 28, classes=0):
            super().__init__(widths, pixels, classes)
            self.spread = NoSpread()
            self.head = nn.Linear(widths[-1], 1 + classes)
            self.embed = nn.Embedding(classes, widths[-1]) if classes else None
    bg.Discriminator = Discriminator


def class_weight(player, weight):
    """--conditional: the class loss pulls D or G (player) at this weight, not the story's."""
    return lambda: setattr(bg, f"{player}_CLASS_WEIGHT", weight)


LEVERS = {"base": lambda: None, "no_spread": no_spread,
          **{f"{player.lower()}_class_{weight:g}": class_weight(player, weight)
             for player in "DG" for weight in (0.25, 0.5, 1, 2, 4)}}  # d_class_0.25, ...


def one_run(lever, seed, args):
    """Train with the lever for args.steps steps of the default schedule; score the average of G."""
    importlib.reload(bg)  # the file as written: no patch of an earlier lever survives
    name, _, flags = lever.partition("=")
    if not flags:
        for part in name.split("+"):  # a stack: each patch on top of the one before
            LEVERS[part]()
    out = Path(args.work) / f"{name}_s{seed}_{args.steps}"
    argv = [*flags.split(), f"--dataset={args.dataset}", f"--data_dir={args.data_dir}",
            f"--seed={seed}", f"--out_dir={out}", f"--max_steps={args.steps}",
            "--info_step=1000000", *args.flags.split()]
    start = time.perf_counter()
    bg.main(argv)
    wall = time.perf_counter() - start
    _, _, fake = quality.main([str(out / "generator.pth"),  # rebuilt by the patched file
                               f"--dataset={args.dataset}", f"--data_dir={args.data_dir}",
                               f"--cache={args.cache}", f"--n={args.n}"])
    return {"lever": name, "flags": flags, "dataset": args.dataset, "seed": seed,
            "steps": args.steps, "wall_s": round(wall, 1), "fid": fake["fid"], "is": fake["is"],
            "min_share": fake["min_share"], "label_accuracy": fake.get("label_accuracy"),
            "cpu": cpu_kind(), "threads": torch.get_num_threads()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lever", nargs="+", default=["base"],
                   help=f"{', '.join(LEVERS)}, several joined by + (no_spread+g_class_2), "
                        "or NAME=FLAGS")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=6000)
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
