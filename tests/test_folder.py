"""--dataset=folder: any folder of pictures, gray or colour, any size, through the same script."""
import os

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import SMALL, same_state
from idx import fake_digits, write_dataset


def picture(seed, size, mode):
    rng = np.random.default_rng(seed)
    bands = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if bands == 1 else pixels, mode)


def make_pictures(root, count=40):
    """Nested class folders of PNG, JPEG, GIF and WebP in mixed sizes, gray and colour, one with
    alpha, a corrupt one and a text file."""
    kinds = [("gray/a", "L", (28, 28), "png"), ("colour/b", "RGB", (40, 30), "jpg"),
             ("colour/c/deep", "RGB", (17, 33), "gif"), ("colour/b", "RGB", (64, 64), "webp")]
    for i in range(count):
        folder, mode, size, ext = kinds[i % len(kinds)]
        (root / folder).mkdir(parents=True, exist_ok=True)
        picture(i, size, mode).save(root / folder / f"{i}.{ext}")
    Image.new("RGBA", (20, 20), (255, 0, 0, 0)).save(root / "gray" / "clear.png")  # all transparent
    (root / "colour" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "notes.txt").write_text("not a picture")
    return root


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    return make_pictures(tmp_path_factory.mktemp("pictures"))


def test_a_folder_of_pictures_is_one_uint8_tensor_of_the_asked_shape(gan, pictures, capsys):
    gan.dataset, gan.data_dir, gan.image_size, gan.channels = "folder", str(pictures), 16, 3
    images = gan.load_images()[0]
    assert images.shape == (41, 3, 16, 16) and images.dtype == torch.uint8  # 40 + the clear one
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 1 unreadable picture of 42; the first: " in err
    assert str(pictures / "colour" / "broken.png") in err
    order = sorted(p for p in pictures.rglob("*") if p.suffix in (".png", ".jpg", ".gif", ".webp"))
    clear = order.index(pictures / "gray" / "clear.png") - 1  # broken.png sorts before it
    assert (images[clear] == 255).all()  # transparency lands on white
    gan.channels = 1
    gray = gan.load_images()[0]
    assert gray.shape == (41, 1, 16, 16) and not torch.equal(gray[0], gray[1])


def test_fit_crops_the_centre_square_and_resizes(gan):
    gan.image_size, gan.channels = 8, 1
    wide = torch.zeros(1, 1, 10, 30, dtype=torch.uint8)
    wide[..., 10:20] = 255  # the centre 10 x 10 square is white, the sides black
    assert (gan.fit(wide) == 255).all()
    gan.channels = 3
    assert gan.fit(wide).shape == (1, 3, 8, 8)


def test_the_built_in_sets_follow_image_size_and_channels(gan, tiny_data):
    gan.data_dir, gan.image_size, gan.channels = str(tiny_data), 32, 3
    images = gan.load_images()[0]
    assert images.shape == (256, 3, 32, 32) and torch.equal(images[:, 0], images[:, 2])


def test_a_folder_too_big_for_memory_is_refused_with_a_size_that_fits(gan, pictures, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr(gan, "available_memory", lambda: 2 * 42 * 3 * 10 * 10 + 1)
    gan.dataset, gan.data_dir, gan.image_size, gan.channels = "folder", str(pictures), 64, 3
    with pytest.raises(SystemExit):
        gan.load_images()
    err = capsys.readouterr().err
    assert ("42 images of 3 x 64 x 64 need" in err and "try --image_size=10" in err
            and "decoding" not in err)


def test_a_colour_run_end_to_end(gan, pictures, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*SMALL, "--dataset=folder", f"--data_dir={pictures}", "--image_size=16", "--channels=3",
            "--batch_size=8", "--epochs=4", "--info_step=5"]  # 41 pictures: 5 steps an epoch
    gan.main([*args, "--out_dir=whole"])
    fake = EventAccumulator(str(next((tmp_path / "whole" / "runs").iterdir())),
                            size_guidance={"images": 0})
    fake.Reload()
    assert (fake.Images("images/fake")[0].width, fake.Images("images/fake")[0].height) == (146, 146)
    assert Image.open(tmp_path / "whole" / "fake_step000005.png").mode in ("RGB", "RGBA")
    gan.main([*args, "--out_dir=cut", "--max_steps=7"])
    gan.main(["--resume", "--out_dir=cut"])  # the shape comes back from the checkpoint
    whole, cut = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True)
                  for d in ("whole", "cut"))
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "rng"):
        assert same_state(whole[key], cut[key]), key
    gan.main(["--sample=5", "--out_dir=whole"])  # no flags: generator.pth knows its shape
    assert torch.load(tmp_path / "whole" / "samples.pt", weights_only=True).shape == (5, 3, 16, 16)


def test_resuming_with_another_shape_is_refused(gan, pictures, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    gan.main([*SMALL, "--dataset=folder", f"--data_dir={pictures}", "--image_size=16",
              "--max_steps=1", "--out_dir=run"])
    with pytest.raises(SystemExit):
        gan.main(["--resume", "--out_dir=run", "--image_size=32"])
    assert "was made with image_size=16: resuming with --image_size=32 would make another run" in \
        capsys.readouterr().err


BAD_FOLDERS = [
    ("missing", "data_dir missing does not exist"),
    ("words", "words holds no pictures (.png, .jpg"),
    ("broken", "none of the 2 pictures in broken could be read; the first: broken/a.png"),
    ("few",
     "few holds 3 training images, fewer than one batch of 16: set --batch_size to at most 3"),
]


@pytest.mark.parametrize("folder, message", BAD_FOLDERS, ids=[f for f, _ in BAD_FOLDERS])
def test_bad_folders_get_one_line_and_nothing_is_written(gan, tmp_path, monkeypatch, capsys, folder,
                                                         message):
    (tmp_path / "words").mkdir()
    (tmp_path / "words" / "a.txt").write_text("no pictures here")
    (tmp_path / "broken").mkdir()
    for name in ("a.png", "b.jpg"):
        (tmp_path / "broken" / name).write_bytes(b"not a picture")
    (tmp_path / "few").mkdir()
    for i in range(3):
        picture(i, (8, 8), "RGB").save(tmp_path / "few" / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        gan.main([*SMALL, "--dataset=folder", f"--data_dir={folder}", "--out_dir=out"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("error:") == 1, err
    assert not (tmp_path / "out").exists()


def test_fewer_digits_than_one_batch_are_refused_too(gan, tmp_path, capsys):
    data = write_dataset(tmp_path, fake_digits(10), fake_digits(10))
    with pytest.raises(SystemExit):
        gan.main([*SMALL, "--batch_size=100000", f"--data_dir={data}",
                  f"--out_dir={tmp_path / 'out'}"])
    assert "holds 10 training images, fewer than one batch of 100000" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def gradient(size=(24, 16)):
    """A colour picture with no two rows or columns alike, so a turn or a flip would show."""
    x, y = np.meshgrid(np.arange(size[0]), np.arange(size[1]))
    return Image.fromarray(np.stack([x * 10, y * 15, (x * y) % 256], -1).astype(np.uint8), "RGB")


def awkward_pictures(folder):
    """(awkward picture, the same picture saved as a plain 8-bit PNG) pairs,
    as real folders hold."""
    folder.mkdir()
    pairs = []

    def pair(name, awkward, plain, **save):
        awkward.save(folder / name, **save)
        plain.save(folder / f"plain_{name}.png")
        pairs.append((folder / name, folder / f"plain_{name}.png"))

    palette = gradient().quantize(colors=16)  # pngquant's kind of output
    pair("palette.png", palette, palette.convert("RGB"))
    see_through = palette.copy()
    see_through.info["transparency"] = 0  # palette entry 0 is transparent: laid on white
    plain = np.array(palette.convert("RGB"))
    plain[np.array(palette) == 0] = 255
    pair("palette_alpha.png", see_through, Image.fromarray(plain), transparency=0)
    deep = np.arange(24 * 16).reshape(16, 24).astype(np.uint16) % 256
    pair("sixteen_bit.png", Image.fromarray(deep * 257), Image.fromarray(deep.astype(np.uint8)))
    pair("picture.bmp", gradient(), gradient())
    # stored sideways, with EXIF Orientation 6: turn 90 degrees clockwise
    jpeg = folder / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    gradient().save(jpeg, exif=exif, quality=95)
    with Image.open(jpeg) as stored:
        upright = stored.transpose(Image.Transpose.ROTATE_270)
    upright.save(folder / "plain_phone.png")
    pairs.append((jpeg, folder / "plain_phone.png"))
    return pairs


def test_pictures_are_read_as_a_viewer_shows_them(gan, tmp_path):
    for awkward, plain in awkward_pictures(tmp_path / "awkward"):
        decoded, reference = gan.read_picture(awkward), gan.read_picture(plain)
        assert decoded.dtype == torch.uint8 and torch.equal(decoded, reference), awkward.name
    assert gan.read_picture(tmp_path / "awkward" / "phone.jpg").shape == (3, 24, 16)  # upright
    # scaled, not clipped
    assert gan.read_picture(tmp_path / "awkward" / "sixteen_bit.png").max() == 255


def test_a_folder_of_awkward_pictures_trains(gan, tmp_path, monkeypatch, capsys):
    """16-bit PNGs among 8-bit ones, BMPs, palettes, a symlinked subfolder, a name that is not
    UTF-8: all read, and a broken one said in words."""
    awkward_pictures(tmp_path / "data")
    (tmp_path / "elsewhere").mkdir()
    gradient().save(tmp_path / "elsewhere" / "linked.png")
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    # read once
    (tmp_path / "data" / "loop").symlink_to(tmp_path / "data", target_is_directory=True)
    gradient().save(os.fsdecode(bytes(tmp_path / "data") + b"/caf\xe9.png"))
    (tmp_path / "data" / "notes.png").write_text("not a picture")
    monkeypatch.chdir(tmp_path)
    gan.main([*SMALL, "--dataset=folder", "--data_dir=data", "--batch_size=4", "--max_steps=2",
              "--image_size=16", "--channels=3", "--out_dir=out"])
    err = capsys.readouterr().err
    assert "skipped 1 unreadable picture of 13; the first: data/notes.png (not a picture)" in err
    data = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)["run"]["data"]
    assert data["images"] == 12  # 5 awkward, 5 plain, the linked one and the one named in Latin-1


def test_a_truncated_picture_is_said_to_be_truncated(gan, tmp_path, capsys):
    gradient((64, 64)).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:300])
    gan.dataset, gan.data_dir, gan.image_size = "folder", str(tmp_path), 8
    assert len(gan.load_images()[0]) == 1
    assert f"{tmp_path / 'cut.png'} (truncated)" in capsys.readouterr().err


def test_a_folder_that_cannot_be_read_says_so(gan, tmp_path, monkeypatch, capsys):
    def walk(top, onerror, **_):  # what os.walk does where the OS says no (as root, chmod will not)
        onerror(PermissionError(13, "Permission denied", str(top)))
        return iter(())
    monkeypatch.setattr(gan.os, "walk", walk)
    gan.dataset, gan.data_dir = "folder", str(tmp_path)
    with pytest.raises(SystemExit):
        gan.load_images()
    assert f"{tmp_path} cannot be read (Permission denied)" in capsys.readouterr().err


def test_a_picture_the_os_will_not_open_is_said_in_words(gan, tmp_path, monkeypatch, capsys):
    for name in ("a.png", "locked.png"):
        gradient().save(tmp_path / name)
    read = gan.read_picture

    def as_a_locked_file_would(path):  # as root, chmod 000 still opens: say what the OS would
        if path.name == "locked.png":
            raise PermissionError(13, "Permission denied", str(path))
        return read(path)
    monkeypatch.setattr(gan, "read_picture", as_a_locked_file_would)
    gan.dataset, gan.data_dir, gan.image_size = "folder", str(tmp_path), 8
    assert len(gan.load_images()[0]) == 1
    assert f"{tmp_path / 'locked.png'} (permission denied)" in capsys.readouterr().err


def test_hidden_files_and_folders_are_not_data(gan, tmp_path):
    """Jupyter leaves .ipynb_checkpoints/ wherever a notebook was opened, macOS .DS_Store and ._
    files: they were trained on, and with conditional .ipynb_checkpoints became a class."""
    from test_conditional import class_folders
    root = class_folders(tmp_path / "data")
    (root / ".ipynb_checkpoints").mkdir()
    Image.new("L", (12, 12), 255).save(root / ".ipynb_checkpoints" / "copy.png")
    Image.new("L", (12, 12), 255).save(root / "cats" / "._0.png")  # AppleDouble, not a picture
    (root / "cats" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    gan.dataset, gan.data_dir, gan.image_size, gan.conditional = "folder", str(root), 12, True
    images, labels, classes = gan.load_images()
    assert classes == ["cats", "dogs", "owls"] and len(images) == 36
    assert not (images == 255).all(-1).all(-1).any()  # none of the white hidden copies
