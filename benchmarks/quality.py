"""Score a basic_gan generator against real digits,
with a small CNN trained here on labelled digits.

    python benchmarks/quality.py outputs/generator.pth
    python benchmarks/quality.py outputs/samples.pt --data_dir=data

Prints, for the samples and for real held-out digits as the reference line:
  FID        Frechet distance between CNN features of the images and of the reference digits
             (lower is better)
  IS         classifier Inception Score, exp E[KL(p(y|x) || p(y))]: 10 means sharp and evenly spread
  min share  the share of the rarest digit among the samples: a collapsed GAN scores near 0
It also writes a bar chart of the digit shares next to the scored file.

Real images: the test split (and the train split where it exists) from --data_dir, a folder
holding the IDX files or a torchvision root. With both splits (Fashion-MNIST:
--dataset=FashionMNIST --data_dir=/usr/share/datasets/fashion-mnist) the CNN trains on the
training images and the test images, which no generator sees, are the FID reference; the
reference line scores real training images against them. Without a train split (as in
../shared, which has only the 10k MNIST test digits) the test digits are split in two: the
even-numbered ones train the CNN and are the FID reference, the odd-numbered ones are held out
and scored as the reference line.
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import basic_gan  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "MNIST" / "raw"
# Fewer samples give a FID dominated by its own noise (and 128 features need 129 at least).
MIN_SAMPLES = 1000


def fail(message):
    print(f"quality.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class Classifier(nn.Module):
    """Two conv blocks and a 128-wide feature layer: over 98% on held-out MNIST
    in a minute of CPU."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.features(x))


def load_real(data_dir, dataset):
    """The real images a score needs, in [0, 1]: the CNN's labelled training set (cnn), labelled
    held-out images for its accuracy (held), the FID reference (ref) and real images scored as
    the reference line (real), named."""
    folders = [Path(data_dir), Path(data_dir) / dataset / "raw"]
    folder = next((f for f in folders if basic_gan.find_idx(f, "test")), None)
    if folder is None:
        fail(f"no t10k-images-idx3-ubyte(.gz) in {data_dir} or {folders[1]}: pass --data_dir")

    def read(split, kind):
        return basic_gan.read_idx(basic_gan.find_idx(folder, split, kind))

    def unit(x):
        return x.float().div(255).unsqueeze(1)

    test_x, test_y = unit(read("test", "images")), read("test", "labels").long()
    if basic_gan.find_idx(folder, "train"):
        # A real train/test split (Fashion-MNIST): the CNN learns the training images, and the
        # test images, which no generator trains on, are the FID reference.
        train_x, train_y = unit(read("train", "images")), read("train", "labels").long()
        return {"cnn": (train_x, train_y), "held": (test_x, test_y), "ref": test_x,
                "real": train_x, "name": "real training images"}
    # Even and odd digits, not halves: MNIST's test set puts one pool of writers before the other.
    return {"cnn": (test_x[0::2], test_y[0::2]), "held": (test_x[1::2], test_y[1::2]),
            "ref": test_x[0::2], "real": test_x[1::2], "name": "real held-out digits"}


def train_classifier(x, y, epochs=20, seed=0):
    torch.manual_seed(seed)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3,
                                                total_steps=epochs * (len(x) // 128))
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(128)[: len(x) // 128]:
            # small shifts: it must read digits, not pixels
            shift = torch.randint(-2, 3, (2,)).tolist()
            batch = torch.roll(x[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(batch), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def cached_classifier(ref_x, ref_y, cache_dir):
    """Train once per set of reference digits; later scores load it in a second."""
    digits = ref_x.numpy().tobytes() + ref_y.numpy().tobytes()
    key = hashlib.sha1(b"v2" + digits).hexdigest()[:12]  # v2: the recipe
    path = Path(cache_dir) / f"classifier_{key}.pt"
    model = Classifier()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = train_classifier(ref_x, ref_y, epochs=max(2, min(20, 100_000 // len(ref_x))))
    path.parent.mkdir(parents=True, exist_ok=True)
    basic_gan.atomic_save(model.state_dict(), path)
    return model


@torch.no_grad()
def features_and_probs(model, x):
    feats, probs = [], []
    for batch in x.split(1000):
        f = model.features(batch)
        feats.append(f.double())
        probs.append(model.head(f).softmax(1).double())
    return torch.cat(feats), torch.cat(probs)


def frechet_distance(a, b):
    """|mu_a - mu_b|^2 + tr(Ca + Cb - 2 (Ca^1/2 Cb Ca^1/2)^1/2),
    with symmetric eigendecompositions."""
    mu_a, mu_b, ca, cb = a.mean(0), b.mean(0), torch.cov(a.T), torch.cov(b.T)
    vals, vecs = torch.linalg.eigh(ca)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ cb @ root_a).clamp(min=0).sqrt().sum()
    distance = (mu_a - mu_b).square().sum() + ca.trace() + cb.trace() - 2 * cross
    return max(0.0, float(distance))  # no -0.00


def inception_score(probs):
    marginal = probs.mean(0, keepdim=True)
    kl = (probs * (probs.clamp(min=1e-12).log() - marginal.clamp(min=1e-12).log())).sum(1)
    return float(kl.mean().exp())


def score(model, images, ref_feats, labels=None):
    """FID against the reference on as many images as held-out digits exist, IS and shares on all,
    and, given the class each image was asked to be, the share the CNN reads as that class."""
    feats, probs = features_and_probs(model, images)
    shares = torch.bincount(probs.argmax(1), minlength=10).double() / len(images)
    found = {"fid": frechet_distance(feats[: len(ref_feats)], ref_feats),
             "is": inception_score(probs), "min_share": float(shares.min()),
             "shares": [round(float(s), 4) for s in shares]}
    if labels is not None:
        found["label_accuracy"] = float((probs.argmax(1) == labels).double().mean())
    return found


def load_samples(path, n, seed, dataset="MNIST"):
    """Samples in [0, 1] from a generator.pth, or a samples.pt as --sample writes it, and the
    class each was asked to be: each class in turn from a conditional generator, else None."""
    labels = None
    if str(path).endswith(".pth"):
        try:
            # load_generator sets basic_gan's channels and image_size to G's
            G = basic_gan.load_generator(path)
        except basic_gan.BadFile as e:
            fail(str(e))
        # its class k must be the dataset's k
        if G.classes and G.classes != basic_gan.class_names(dataset):
            fail(f"{path} draws the classes {', '.join(G.classes)}, not {dataset}'s; score it with "
                 f"the --dataset and --data_dir it trained on")
        shape = (basic_gan.channels, basic_gan.image_size, basic_gan.image_size)
        labels = torch.arange(n) % len(G.classes) if G.classes else None
        torch.manual_seed(seed)
        samples = (basic_gan.generate(G, torch.randn(n, G.z_dim), labels).view(n, *shape) + 1) / 2
    else:
        try:
            samples = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            fail(f"{path} is not a samples.pt ({type(e).__name__}): pass a generator.pth or what "
                 f"python basic_gan.py --sample=10000 writes")
        if not isinstance(samples, torch.Tensor) or samples.dim() != 4:
            fail(f"{path} is not a samples.pt (N x 1 x 28 x 28 images): pass a generator.pth or "
                 f"what python basic_gan.py --sample=10000 writes, not a checkpoint")
        samples = samples.float()[:n]
    if tuple(samples.shape[1:]) != (1, 28, 28):
        what = " x ".join(map(str, samples.shape[1:]))
        fail(f"{path} draws {what} images; the scoring CNN reads 1 x 28 x 28 ones (MNIST, "
             f"Fashion-MNIST). Train with --channels=1 --image_size=28 to score it here")
    return samples, labels


def plot_shares(shares, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = plt.figure(figsize=(5, 2.5))
    plt.bar(range(10), [100 * s for s in shares])
    plt.axhline(10, color="gray", linestyle=":")
    plt.xticks(range(10)), plt.xlabel("digit"), plt.ylabel("% of samples"), plt.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", help="a generator.pth, or a samples.pt (N x 1 x 28 x 28 in [0, 1])")
    p.add_argument("--data_dir", default=str(SHARED) if SHARED.exists() else "data",
                   help="real digits")
    p.add_argument("--dataset", default="MNIST")
    p.add_argument("--n", type=int, default=10000, help="samples to score")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=str(REPO / "benchmarks" / ".cache"),
                   help="where the CNN is kept")
    p.add_argument("--json", help="append the numbers as one JSON line to this file")
    args = p.parse_args(argv)
    if not Path(args.samples).is_file():
        fail(f"no file {args.samples}: train first (python basic_gan.py writes "
             f"outputs/generator.pth), or pass a samples.pt that python basic_gan.py "
             f"--sample=10000 writes")
    if args.n < MIN_SAMPLES:
        fail(f"--n={args.n} is too few samples for a meaningful FID: use at least {MIN_SAMPLES}")
    samples, labels = load_samples(args.samples, args.n, args.seed, args.dataset)
    if len(samples) < MIN_SAMPLES:
        fail(f"{args.samples} holds {len(samples)} samples, too few for a meaningful FID: write at "
             f"least {MIN_SAMPLES}, e.g. python basic_gan.py --sample=10000")

    sets = load_real(args.data_dir, args.dataset)
    model = cached_classifier(*sets["cnn"], args.cache)
    (held_x, held_y), ref_x = sets["held"], sets["ref"][: args.n]
    accuracy = float((features_and_probs(model, held_x)[1].argmax(1) == held_y).double().mean())
    ref_feats, _ = features_and_probs(model, ref_x)
    real = score(model, sets["real"][: args.n], ref_feats)
    fake = score(model, samples, ref_feats, labels)
    plot_shares(fake["shares"], Path(args.samples).with_name("digit_shares.png"))

    if labels is not None:  # a conditional generator: does it draw the class it was asked for?
        print(f"label accuracy: the CNN reads {fake['label_accuracy']:.2%} of the samples as the "
              f"class they were asked to be, and {accuracy:.2%} of real held-out images right")
    print(f"classifier: {accuracy:.2%} on {len(held_x)} held-out real images ({args.data_dir}); "
          f"FID on {min(len(samples), len(ref_feats))} samples "
          f"vs {len(ref_feats)} reference images")
    print(f"{'':24} {'FID':>7} {'IS':>6} {'min share':>10}   shares of classes 0-9 (%)")
    for name, s in ((sets["name"], real), (Path(args.samples).name, fake)):
        shares = " ".join(f"{100 * v:4.1f}" for v in s["shares"])
        print(f"{name:24} {s['fid']:7.2f} {s['is']:6.2f} {100 * s['min_share']:9.1f}%   {shares}")
    if args.json:
        with open(args.json, "a") as f:
            numbers = {"samples": args.samples, "accuracy": accuracy, "real": real, "fake": fake}
            f.write(json.dumps(numbers) + "\n")
    return accuracy, real, fake


if __name__ == "__main__":
    main()
