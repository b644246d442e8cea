"""The floor under a training step: its matrix products alone, against the whole step.

    python benchmarks/floor.py                       the defaults' step, on this CPU
    python benchmarks/floor.py --batch_size=256      any constant, as basic_gan takes it

It runs basic_gan's own train_step (with R1, as every r1_every-th step does, and without) and the
average's update, records the shape of every matrix product the step makes (forward and backward),
then times those products alone, in the step's precision, and the whole step beside them. The
products are the work a step cannot shed; the rest (Adam, the casts, BatchNorm, element-wise ops,
dispatch) is what fusing or compiling could at best remove. So 1 / (the products' time) is the most
steps per second this recipe can reach on this CPU.
"""
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import basic_gan as bg  # noqa: E402

PRODUCTS = {torch.ops.aten.mm.default: (0, 1), torch.ops.aten.addmm.default: (1, 2)}


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


def best_of(fn, repeats, rounds=5):
    """The fastest of a few rounds, in seconds per call: the machine's drift only ever adds."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats)
    return min(times)


def main(argv=None, repeats=50):
    vars(bg).update(bg.as_meant({**bg.DEFAULTS, **bg.parse_args(argv or [])}))  # as its command line
    bg.check_config()
    dev, precision = bg.pick_device()
    autocast = lambda: torch.autocast(dev.type, torch.bfloat16, enabled=precision == "bf16")  # as train's
    G, D, G_ema, opt_g, opt_d = bg.make_models(dev)
    pixels = bg.channels * bg.image_size ** 2
    real = torch.rand(bg.batch_size, pixels, device=dev) * 2 - 1
    step = lambda use_r1: (bg.train_step(G, D, opt_g, opt_d, real.clone(), use_r1=use_r1, autocast=autocast),
                           bg.ema_update(G_ema, G, 1000))
    lines = []
    for use_r1 in (False, True):
        step(use_r1)  # Adam's state and the first casts, outside the count
        with RecordProducts() as mode:
            step(use_r1)
        mats = [(torch.randn(a, dtype=dtype, device=dev), torch.randn(b, dtype=dtype, device=dev))
                for a, b, dtype in mode.products]
        flop = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in mats)
        products = best_of(lambda: [a @ b for a, b in mats], repeats)
        whole = best_of(lambda: step(use_r1), repeats)
        lines.append(f"{'with R1' if use_r1 else 'a plain step'}: {len(mats)} products, {flop / 1e9:.2f} GFLOP, "
                     f"alone {products * 1e3:.2f} ms ({flop / products / 1e9:.0f} GFLOP/s); the whole step "
                     f"{whole * 1e3:.2f} ms. At most {1 / products:.0f} steps/s with everything else free, "
                     f"against {1 / whole:.0f}")
    print(f"{precision} on {dev} ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads), "
          f"batch {bg.batch_size}:")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main(sys.argv[1:])
