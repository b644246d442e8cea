"""The floor under a training step: its matrix products alone, against the whole step.

    python benchmarks/floor.py                    the defaults' steps, on the device basic_gan picks
    python benchmarks/floor.py --batch_size=256   any of basic_gan's constants, as --name=value

A maintainer's tool. It runs basic_gan's own train_step and the average's update, as the loop does
over one cycle of steps (D learns on each, G on every n_critic-th, R1 on every r1_every-th), records
the shape of every matrix product each step makes (forward and backward), then times those
products alone, in the step's precision, and the whole step beside them. The products are the work
a step cannot shed; the rest (Adam, the casts, element-wise ops, dispatch) is what fusing or
compiling could at best remove. So 1 / (the products' time) is the most steps per second this
recipe can reach on this device.
"""
import argparse
import difflib
import math
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import basic_gan as bg  # noqa: E402

PRODUCTS = {torch.ops.aten.mm.default: (0, 1), torch.ops.aten.addmm.default: (1, 2)}
CPU = torch.device("cpu")


class RecordProducts(TorchDispatchMode):
    """Every mm and addmm the step runs, as the two matrices it multiplies (shape and dtype)."""

    def __init__(self):
        super().__init__()
        self.products = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in PRODUCTS:
            a, b = (args[i] for i in PRODUCTS[func])
            self.products.append((tuple(a.shape), tuple(b.shape), a.dtype))
        return func(*args, **(kwargs or {}))


def sync(dev):
    """Wait for the device: a GPU runs what it is given later, so a timer must wait for it."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


def best_of(fn, repeats, rounds=5, dev=CPU):
    """The fastest of a few rounds, in seconds per call: the machine's drift only ever adds."""
    fn()
    times = []
    for _ in range(rounds):
        sync(dev)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync(dev)
        times.append((time.perf_counter() - start) / repeats)
    return min(times)


def describe(dev):
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return (f"{dev.type}, {torch.backends.cpu.get_cpu_capability()}, "
            f"{torch.get_num_threads()} threads")


def parse(argv, repeats):
    """floor.py's own options, and basic_gan's constants as --name=value,
    checked as it checks them."""
    p = argparse.ArgumentParser(prog="floor.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Any of basic_gan's constants may follow as --name=value "
                                       "(python basic_gan.py --help lists them).")
    p.add_argument("--repeats", type=int, default=repeats, help="steps per timed round")
    args, constants = p.parse_known_args(argv)
    for arg in constants:
        name = arg[2:].partition("=")[0]
        if not arg.startswith("--") or "=" not in arg or name not in bg.DEFAULTS:
            close = difflib.get_close_matches(name, [*bg.DEFAULTS, "repeats"], n=1)
            hint = (f"; did you mean --{close[0]}?" if close
                    else ": basic_gan's constants go as --name=value")
            p.error(f"unknown option {arg!r}" + hint)
    if args.repeats < 1:
        p.error(f"--repeats={args.repeats}: time at least one step")
    vars(bg).update(bg.as_meant({**bg.DEFAULTS, **bg.parse_args(constants)}))
    bg.check_config()
    return args


def main(argv=None, repeats=50):
    args = parse(sys.argv[1:] if argv is None else argv, repeats)
    dev, precision = bg.pick_device()
    torch.set_float32_matmul_precision("high")  # TF32 on GPUs that have it, as training sets it

    def autocast():
        return torch.autocast(dev.type, torch.bfloat16, enabled=precision == "bf16")

    G, D, G_ema, opt_g, opt_d = bg.make_models(dev)
    pixels = bg.channels * bg.image_size ** 2
    real = torch.rand(bg.batch_size, pixels, device=dev) * 2 - 1
    cycle = math.lcm(bg.n_critic, bg.r1_every if bg.r1_gamma > 0 else 1)  # the loop's steps repeat

    def step(s):
        bg.train_step(G, D, opt_g, opt_d, real.clone(),
                      use_r1=bg.r1_gamma > 0 and s % bg.r1_every == 0,
                      learn_g=(s + 1) % bg.n_critic == 0, autocast=autocast)
        bg.ema_update(G_ema, G, 1000 + s)

    def steps():
        for s in range(cycle):
            step(s)

    steps()  # Adam's state and the first casts, outside the count
    with RecordProducts() as mode:
        steps()
    mats = [(torch.randn(a, dtype=dtype, device=dev), torch.randn(b, dtype=dtype, device=dev))
            for a, b, dtype in mode.products]
    flop = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in mats)
    cycles = max(1, args.repeats // cycle)  # timed per round
    products = best_of(lambda: [a @ b for a, b in mats], cycles, dev=dev) / cycle
    whole = best_of(steps, cycles, dev=dev) / cycle
    line = (f"a step, over the loop's cycle of {cycle}: {len(mats) / cycle:.1f} products, "
            f"{flop / cycle / 1e9:.2f} GFLOP, alone {products * 1e3:.2f} ms "
            f"({flop / cycle / products / 1e9:.0f} GFLOP/s); the whole step {whole * 1e3:.2f} ms. "
            f"At most {1 / products:.0f} steps/s with everything else free, "
            f"against {1 / whole:.0f}")
    print(f"{precision} on {describe(dev)}, batch {bg.batch_size}:\n{line}")
    return line, len(mats), cycle


if __name__ == "__main__":
    main()
