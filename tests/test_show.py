"""show(): a grid of images, saved as a PNG when there is no screen."""
import matplotlib.pyplot as plt
import torch
from PIL import Image


def test_show_headless_saves_a_png_and_closes_its_figure(gan, tmp_path):
    gan.out_dir = str(tmp_path / "out")
    images = torch.linspace(-1, 1, 16 * 784).view(16, 784)
    gan.show(images, "fake", step=7)
    png = tmp_path / "out" / "fake_step000007.png"
    assert png.is_file()
    width, height = Image.open(png).size
    assert width > 100 and height > 100
    assert plt.get_fignums() == []


def test_show_accepts_any_layout_of_28x28_images(gan, tmp_path):
    gan.out_dir = str(tmp_path)
    gan.show(torch.zeros(4, 1, 28, 28), "real")
    gan.show(torch.zeros(4, 28, 28, dtype=torch.float64), "real", step=1)
    assert {p.name for p in tmp_path.iterdir()} == {"real_step000000.png", "real_step000001.png"}
    assert plt.get_fignums() == []
