"""Time to quality: FID against wall seconds for training recipes, on one machine.

    python benchmarks/time_to_quality.py --epochs 5 10 20 40 --seeds 0 1 2
    python benchmarks/time_to_quality.py --recipe "ema995=--ema_decay=0.995" --stop_at 60 90
    python benchmarks/time_to_quality.py --plot_only

Each point is one whole command, `python basic_gan.py [recipe flags] --epochs=N` (the lr schedule
spans the run) or the plain recipe stopped with Ctrl-C after --stop_at seconds, timed from start
to exit (import, data, training, saving), then scored by quality.py on 10,000 samples. Every point
is appended as a JSON line to --results, with the CPU kind, and the table and the curve are drawn
from all the points there: compare recipes only within one machine.

Data: --dataset FashionMNIST (train split; scored against the test split no run sees) needs
--fashion_dir (Debian's dataset-fashion-mnist); MNIST needs --mnist_dir (here: the real test digits
tiled to 60k, see tests/idx.py, so its numbers are flattered).
"""
import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import quality  # noqa: E402


def fail(message):
    print(f"time_to_quality.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def cpu_kind():
    return f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}, {os.cpu_count()} cores"


def one_point(recipe, flags, dataset, data_dir, seed, epochs, stop_at, work, cache, n=10000):
    """Train once as a user would, time the whole command, and score what it saved."""
    out = Path(work) / f"{recipe}_{dataset}_s{seed}_e{epochs}_t{stop_at}"
    cmd = [sys.executable, str(REPO / "basic_gan.py"), *flags, f"--dataset={dataset}",
           f"--data_dir={data_dir}", f"--seed={seed}", f"--out_dir={out}",
           *([f"--epochs={epochs}"] if epochs else [])]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    log = Path(work) / f"{out.name}.log"  # a file, not a pipe: a full pipe would stop the run
    stopped = False
    start = time.perf_counter()
    with open(log, "w") as stderr:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            proc.wait(timeout=stop_at)
        except subprocess.TimeoutExpired:  # the learner's Ctrl-C: it saves, then exits
            proc.send_signal(signal.SIGINT)
            proc.wait()
            stopped = True
    wall = time.perf_counter() - start
    if not (out / "generator.pth").is_file():
        if stopped:  # a Ctrl-C before training began: the run had nothing to save yet
            fail(f"the run stopped at {stop_at:g} s, before its first save (a generator is saved "
                 f"after each epoch, and at a Ctrl-C once training has begun): give --stop_at "
                 f"more seconds")
        fail(f"{' '.join(cmd)} saved no generator: {log.read_text().strip().splitlines()[-1:]}")
    args = [str(out / "generator.pth"), f"--dataset={dataset}", f"--data_dir={data_dir}",
            f"--cache={cache}", f"--n={n}"]
    _, real, fake = quality.main(args)
    return {"recipe": recipe, "flags": flags, "dataset": dataset, "seed": seed, "epochs": epochs,
            "stop_at": stop_at, "wall_s": round(wall, 1), "fid": fake["fid"], "is": fake["is"],
            "min_share": fake["min_share"], "cpu": cpu_kind()}


def table_and_curve(points, path):
    """A row per (recipe, dataset, epochs or stop): wall seconds and FID over seeds;
    FID against seconds."""
    rows = {}
    for p in points:
        key = (p["cpu"], p["dataset"], p["recipe"], p["epochs"], p["stop_at"])
        rows.setdefault(key, []).append(p)
    print(f"{'CPU':28} {'dataset':13} {'recipe':12} {'run':>9} {'wall s':>14} "
          f"{'FID, each seed':>24} {'IS':>5}")
    for (cpu, dataset, recipe, epochs, stop_at), ps in sorted(rows.items(), key=str):
        run = f"{epochs} ep" if epochs else f"^C {stop_at}s"
        walls = "/".join(f"{p['wall_s']:.0f}" for p in ps)
        fids = " / ".join(f"{p['fid']:.2f}" for p in ps)
        print(f"{cpu:28} {dataset:13} {recipe:12} {run:>9} {walls:>14} {fids:>24} "
              f"{sum(p['is'] for p in ps) / len(ps):5.2f}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    datasets = sorted({p["dataset"] for p in points})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for recipe in sorted({p["recipe"] for p in points if p["dataset"] == dataset}):
            ps = [p for p in points if p["dataset"] == dataset and p["recipe"] == recipe]
            dots = ax.scatter([p["wall_s"] for p in ps], [p["fid"] for p in ps], s=12, alpha=0.6)
            runs = {}  # each run length's mean over seeds, joined by a line
            for p in ps:
                runs.setdefault((p["epochs"], p["stop_at"]), []).append((p["wall_s"], p["fid"]))
            means = sorted([sum(v) / len(v) for v in zip(*pairs)] for pairs in runs.values())
            # alpha=1: a solid line, not the dots' 0.6
            ax.plot(*zip(*means), color=dots.get_facecolor()[0], alpha=1, label=recipe)
        ax.set(xscale="log", yscale="log", xlabel="wall seconds of the whole command", ylabel="FID",
               title=f"{dataset} ({points[0]['cpu']})")
        for axis, ticks in (
                (ax.xaxis, (30, 60, 90, 120, 180, 240, 360, 480, 600, 900, 1200, 1800)),
                (ax.yaxis, (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 30, 40, 60, 80))):
            axis.set_ticks(ticks), axis.set_ticks([], minor=True)  # plain numbers, not 10^x
            axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.autoscale(), ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print(f"curve: {path}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", action="append", default=[],
                   help='NAME=FLAGS, e.g. "old=--ema_decay=0.999" '
                        '(default: the file as it is, "defaults=")')
    p.add_argument("--dataset", nargs="+", default=["FashionMNIST"],
                   choices=["MNIST", "FashionMNIST"])
    p.add_argument("--fashion_dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--mnist_dir", default="data")
    p.add_argument("--epochs", nargs="*", type=int, default=[], help="runs of this many epochs")
    p.add_argument("--stop_at", nargs="*", type=float, default=[],
                   help="the plain recipe, Ctrl-C at these seconds")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--results", default=str(REPO / "benchmarks" / "time_to_quality.jsonl"))
    p.add_argument("--cache", default=str(REPO / "benchmarks" / ".cache"))
    p.add_argument("--n", type=int, default=10000, help="samples quality.py scores")
    p.add_argument("--keep",
                   help="keep each run's out_dir (its samples, weights, log) under this folder")
    p.add_argument("--plot_only", action="store_true",
                   help="draw the table and curve from --results")
    args = p.parse_args(argv)
    recipes = [r.partition("=")[::2] for r in args.recipe] or [("defaults", "")]
    if not args.plot_only and not (args.epochs or args.stop_at):
        fail("give --epochs N ... or --stop_at SECONDS ... (or --plot_only)")
    runs = [(e, None) for e in args.epochs] + [(None, t) for t in args.stop_at]
    with contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory() as work:
        Path(work).mkdir(parents=True, exist_ok=True)
        for dataset in [] if args.plot_only else args.dataset:
            data_dir = args.fashion_dir if dataset == "FashionMNIST" else args.mnist_dir
            for (name, flags), seed, (epochs, stop_at) in (
                    (r, s, run) for r in recipes for s in args.seeds for run in runs):
                point = one_point(name, flags.split(), dataset, data_dir, seed, epochs, stop_at,
                                  work, args.cache, args.n)
                with open(args.results, "a") as f:
                    f.write(json.dumps(point) + "\n")
    if not Path(args.results).is_file():
        fail(f"no results in {args.results} yet")
    lines = Path(args.results).read_text().splitlines()
    points = [json.loads(line) for line in lines if line.strip()]
    table_and_curve(points, Path(args.results).with_suffix(".png"))
    return points


if __name__ == "__main__":
    main()
