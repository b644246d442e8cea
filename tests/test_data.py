"""The data: IDX files decoded once, each epoch batched by index in its own order; clear errors."""
import gzip

import pytest
import torch
from torchvision import datasets, transforms

from idx import fake_digits, idx_bytes, write_dataset, write_idx


def test_read_idx_plain_and_gzipped(gan, tmp_path):
    images, labels = fake_digits(10)
    write_idx(tmp_path / "a.gz", images)
    write_idx(tmp_path / "b", labels)
    assert torch.equal(gan.read_idx(tmp_path / "a.gz"), images)
    assert torch.equal(gan.read_idx(tmp_path / "b"), labels)


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b[:-100], "is truncated or corrupt: 7756 bytes, its header says 7856"),
    (lambda b: (1234).to_bytes(4, "big") + b[4:], "is not an IDX file: magic number 1234"),
    (lambda b: b"", "is not an IDX file: magic number 0"),
])
def test_read_idx_refuses_bad_files(gan, capsys, tmp_path, corrupt, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(idx_bytes(fake_digits(10)[0])))
    with pytest.raises(SystemExit) as exit_:
        gan.read_idx(path)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{path} {message}" in err and err.count("\n") == 1


def test_read_idx_names_a_corrupt_gzip(gan, capsys, tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    data = gzip.compress(idx_bytes(fake_digits(10)[0]))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit):
        gan.read_idx(path)
    err = capsys.readouterr().err
    assert f"{path} is unreadable or corrupt" in err and err.count("\n") == 1


def test_a_folder_of_idx_files_is_a_data_dir(gan, tiny_data):
    gan.data_dir = str(tiny_data)
    images = gan.load_images("train")[0]
    assert images.shape == (256, 1, 28, 28) and images.dtype == torch.uint8
    assert gan.load_images("test")[0].shape == (64, 1, 28, 28)


def test_each_epoch_serves_each_image_once_in_its_own_order(gan):
    gan.batch_size, gan.seed = 32, 0
    images = torch.arange(100).view(100, 1)  # each image is its own index
    labels = torch.zeros(100, dtype=torch.long)

    def epoch(e, start=0):
        return torch.stack([b for b, _ in gan.make_dataloader(images, labels, e, start)])

    batches = epoch(0)
    assert isinstance(gan.make_dataloader(images, labels, 0), torch.utils.data.DataLoader)
    assert batches.shape == (3, 32, 1)  # the last partial batch is dropped
    assert len(set(batches.flatten().tolist())) == 96 and batches.max() < 100
    assert not torch.equal(batches.flatten(), torch.arange(96))  # shuffled
    assert torch.equal(epoch(0), batches)  # the same two numbers, the same order
    assert torch.equal(epoch(0, start=2), batches[2:])  # a resumed epoch skips what it trained
    assert not torch.equal(epoch(1), batches)
    gan.seed = 1
    assert not torch.equal(epoch(0), batches)


def test_the_loader_leaves_the_global_random_state_alone(gan):
    """DataLoader draws a seed per iterator; not from the generator z comes from, or a resumed
    epoch would draw other noise than the whole run did."""
    state = torch.get_rng_state()
    next(iter(gan.make_dataloader(torch.zeros(256, 1), torch.zeros(256), 0)))
    assert torch.equal(torch.get_rng_state(), state)


def test_model_range(gan):
    x = gan.to_model_range(torch.tensor([[[0, 255]]], dtype=torch.uint8))
    assert x.tolist() == [[-1.0, 1.0]]


def test_missing_dataset_offline_says_where_to_put_the_files(gan, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there
    gan.data_dir = str(tmp_path / "data")
    with pytest.raises(SystemExit) as exit_:
        gan.load_images("train")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert "could not be downloaded" in err and f"{tmp_path / 'data'}/MNIST/raw/" in err
    assert "train-images-idx3-ubyte.gz" in err
    assert not (tmp_path / "data").exists()  # the empty folders torchvision made are gone


def test_torchvision_layout_with_real_digits(gan, real_root):
    gan.data_dir = str(real_root)
    images = gan.load_images("train")[0]
    assert images.shape == (60000, 1, 28, 28)
    # the same pixels the textbook ToTensor pipeline sees
    reference = datasets.MNIST(str(real_root), train=True, transform=transforms.ToTensor())
    assert torch.equal(gan.to_model_range(images[:1]), reference[0][0].view(1, -1) * 2 - 1)


def test_gzipped_files_in_the_torchvision_folder_are_read_as_they_are(gan, tmp_path, capsys):
    """As the README says, offline: the four .gz files in data/MNIST/raw. torchvision would check
    their md5 against MNIST's own and call them missing; they are read, or called corrupt."""
    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", fake_digits(40), fake_digits(10))
    gan.data_dir = str(tmp_path / "data")
    assert torch.equal(gan.load_images("train")[0][:, 0], fake_digits(40)[0])
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(SystemExit):
        gan.load_images("train")
    err = capsys.readouterr().err
    assert (f"{raw}/train-images-idx3-ubyte.gz is unreadable or corrupt" in err
            and "downloaded" not in err)
