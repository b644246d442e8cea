"""show(): a grid of images, saved as a PNG when there is no screen."""
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image


def test_show_headless_saves_the_grid_as_a_png_and_leaves_no_figure(gan, tmp_path):
    gan.out_dir = str(tmp_path / "out")
    images = torch.linspace(-1, 1, 16 * 784).view(16, 784)
    gan.show(images, "fake", step=7)
    png = tmp_path / "out" / "fake_step000007.png"
    assert png.is_file()
    assert Image.open(png).size == (8 * 30 + 2, 2 * 30 + 2)  # the grid itself: 2 rows of 8
    assert plt.get_fignums() == []


def test_show_headless_writes_the_grid_as_it_is(gan, tmp_path):
    gan.out_dir = str(tmp_path)
    images = torch.linspace(-1, 1, 64 * 784).view(64, 784)
    gan.show(images, "fake", step=3)
    png = torch.from_numpy(np.array(Image.open(tmp_path / "fake_step000003.png")))
    pixels = gan.grid(images).mul(255).add(0.5).clamp(0, 255).byte()  # as save_image rounds
    assert torch.equal(png, pixels.permute(1, 2, 0))
    assert plt.get_fignums() == []


def test_show_accepts_any_layout_of_28x28_images(gan, tmp_path):
    gan.out_dir = str(tmp_path)
    gan.show(torch.zeros(4, 1, 28, 28), "real")
    gan.show(torch.zeros(4, 28, 28, dtype=torch.float64), "real", step=1)
    assert {p.name for p in tmp_path.iterdir()} == {"real_step000000.png", "real_step000001.png"}
    assert plt.get_fignums() == []
