"""Writing IDX files (the MNIST format) for tests and benchmarks:
magic, big-endian sizes, raw bytes."""
import gzip
import shutil
from pathlib import Path

import torch

NAMES = {("train", "images"): "train-images-idx3-ubyte",
         ("train", "labels"): "train-labels-idx1-ubyte",
         ("test", "images"): "t10k-images-idx3-ubyte",
         ("test", "labels"): "t10k-labels-idx1-ubyte"}
SHARED_RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "MNIST" / "raw"


def idx_bytes(tensor):
    magic = 2051 if tensor.dim() == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in tensor.shape)
    return header + tensor.to(torch.uint8).contiguous().numpy().tobytes()


def write_idx(path, tensor):
    data = idx_bytes(tensor)
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        Path(path).write_bytes(data)


def fake_digits(n, seed=0):
    """n blurry 28x28 blobs with labels: enough for a few training steps, not real digits."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.zeros(n, 28, 28)
    rows = torch.arange(28).view(28, 1)
    for i, label in enumerate(labels.tolist()):
        r, c = 6 + label, 8 + (label * 7) % 12
        images[i] = 255 * ((rows - r) ** 2 + (rows.T - c) ** 2 < 30)
    return images.to(torch.uint8), labels.to(torch.uint8)


def write_dataset(folder, train, test, gz=True):
    """Write (images, labels) pairs for both splits as the four IDX files, in one folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, (images, labels) in (("train", train), ("test", test)):
        for kind, tensor in (("images", images), ("labels", labels)):
            write_idx(folder / (NAMES[split, kind] + (".gz" if gz else "")), tensor)
    return folder


def read_shared_test_set():
    """The real MNIST test digits from ../shared, or None where that folder is absent."""
    if not (SHARED_RAW / "t10k-images-idx3-ubyte.gz").exists():
        return None
    import basic_gan
    return (basic_gan.read_idx(SHARED_RAW / "t10k-images-idx3-ubyte.gz"),
            basic_gan.read_idx(SHARED_RAW / "t10k-labels-idx1-ubyte.gz"))


def real_mnist_root(root, tile=6):
    """A torchvision-layout MNIST root made of the real test digits; the 'train' split tiles them
    `tile` times (60k for 6), since the real training images cannot be had here. None if absent."""
    real = read_shared_test_set()
    if real is None:
        return None
    images, labels = real
    raw = write_dataset(Path(root) / "MNIST" / "raw",
                        (images.repeat(tile, 1, 1), labels.repeat(tile)), real, gz=False)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(SHARED_RAW / name, raw / name)
    return Path(root)
