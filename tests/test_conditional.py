"""conditional = True: G and D see each image's class, and --sample draws the class asked for."""
import pytest
import torch
from PIL import Image

from conftest import SMALL, same_state
from idx import fake_digits, write_dataset


def class_folders(root, names=("cats", "dogs", "owls"), each=12):
    """Pictures in a subfolder per class, ImageFolder's layout; each class a shade of its own."""
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(each):
            Image.new("L", (12, 12), 40 + 80 * k + i).save(root / name / f"{i}.png")
    return root


def test_the_classes_come_from_the_label_files_or_the_subfolders(gan, tiny_data, tmp_path):
    gan.conditional, gan.data_dir = True, str(tiny_data)
    images, labels, names = gan.load_images("train")
    assert torch.equal(labels, fake_digits(256)[1].long()) and names == list("0123456789")
    gan.dataset = "FashionMNIST"
    assert gan.load_images("train")[2][:2] == ["T-shirt/top", "Trouser"]
    gan.dataset, gan.data_dir, gan.image_size = "folder", str(class_folders(tmp_path / "pets")), 8
    images, labels, names = gan.load_images()
    assert names == ["cats", "dogs", "owls"] and labels.tolist() == [0] * 12 + [1] * 12 + [2] * 12
    # the owls' shade
    assert images[labels == 2].float().mean() > images[labels == 0].float().mean()
    gan.conditional = False  # the unconditional run reads no labels at all
    assert gan.load_images()[2] == [] and gan.load_images()[1].eq(0).all()


def refusal(gan, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        gan.main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    return err


def test_what_a_conditional_run_cannot_use_is_refused_in_one_line(gan, tiny_data, tmp_path,
                                                                   monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (8, 8)).save(flat / "a.png")
    class_folders(tmp_path / "one", names=("cats",))
    no_labels = write_dataset(tmp_path / "no_labels", fake_digits(64), fake_digits(8))
    (no_labels / "train-labels-idx1-ubyte.gz").unlink()
    wrong = write_dataset(tmp_path / "wrong", fake_digits(64), fake_digits(8))
    write_dataset(tmp_path / "other", fake_digits(50), fake_digits(8))
    other_labels = (tmp_path / "other" / "train-labels-idx1-ubyte.gz").read_bytes()
    (wrong / "train-labels-idx1-ubyte.gz").write_bytes(other_labels)
    folder = [*SMALL, "--conditional", "--dataset=folder", "--image_size=8"]
    assert "flat/a.png is in no class: with conditional, each picture goes in a subfolder" in \
        refusal(gan, capsys, [*folder, "--data_dir=flat", "--out_dir=a"])
    assert "conditional needs two classes at least, and one holds 1" in \
        refusal(gan, capsys, [*folder, "--data_dir=one", "--out_dir=b"])
    assert "there is no train label file" in \
        refusal(gan, capsys, [*SMALL, "--conditional", "--data_dir=no_labels"])
    assert "does not match the images: 50 labels for 64 images" in \
        refusal(gan, capsys, [*SMALL, "--conditional", "--data_dir=wrong", "--out_dir=c"])
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c", "outputs"))


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """A finished conditional run on three classes of pictures."""
    import basic_gan
    root = tmp_path_factory.mktemp("pets")
    saved = basic_gan.config()
    basic_gan.main([*SMALL, "--conditional", "--dataset=folder",
                    f"--data_dir={class_folders(root / 'data')}", "--image_size=8",
                    "--batch_size=12", "--epochs=4", "--info_step=4", f"--out_dir={root / 'run'}"])
    vars(basic_gan).update(saved)
    return root


def test_label_draws_one_class_by_name_or_number_as_png_files(gan, pets, capsys):
    run = pets / "run"
    gan.main(["--sample=6", "--label=dogs", f"--out_dir={run}"])
    # numbered in G's order
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["1_dogs"]
    assert len(list((run / "samples" / "1_dogs").glob("*.png"))) == 6
    gan.main(["--sample=4", "--label=2", f"--out_dir={run}"])
    assert [p.name for p in (run / "samples").iterdir()] == ["2_owls"]
    gan.main(["--sample=9", f"--out_dir={run}"])  # no label: each class in turn
    assert ({p.name: len(list(p.iterdir())) for p in (run / "samples").iterdir()}
            == {"0_cats": 3, "1_dogs": 3, "2_owls": 3})
    with Image.open(run / "samples" / "0_cats" / "0.png") as png:
        assert (png.size, png.mode) == ((8, 8), "L")
    gan.main(["--sample=24", f"--out_dir={run}"])
    # a row a class, 8 in each: 8-pixel images
    assert Image.open(run / "samples.png").size == (82, 32)
    assert "no class 'bats': the classes are cats, dogs, owls" in \
        refusal(gan, capsys, ["--sample=2", "--label=bats", f"--out_dir={run}"])
    assert "no class '3'" in refusal(gan, capsys, ["--sample=2", "--label=3", f"--out_dir={run}"])


def test_label_on_an_unconditional_generator_says_why(gan, tiny_data, tmp_path, capsys):
    gan.main([*SMALL, "--max_steps=2", f"--data_dir={tiny_data}", f"--out_dir={tmp_path}"])
    assert "this generator draws no classes (it trained with conditional=False)" in \
        refusal(gan, capsys, ["--sample=2", "--label=7", f"--out_dir={tmp_path}"])


def test_generate_takes_the_classes_from_your_own_code(gan, pets):
    G = gan.load_generator(pets / "run" / "generator.pth")
    assert G.classes == ["cats", "dogs", "owls"]
    z = torch.randn(3, G.z_dim)
    images = gan.generate(G, z, torch.tensor([0, 1, 2]))
    assert (images.shape == (3, 64)
            and not torch.equal(images, gan.generate(G, z, torch.tensor([2, 1, 0]))))


def test_a_conditional_resume_is_bit_exact_and_keeps_conditional(gan, pets, tmp_path, monkeypatch,
                                                                  capsys):
    monkeypatch.chdir(tmp_path)
    args = [*SMALL, "--conditional", "--dataset=folder", f"--data_dir={pets / 'data'}",
            "--image_size=8", "--batch_size=12", "--epochs=4", "--info_step=4"]
    gan.main([*args, "--out_dir=cut", "--max_steps=5"])
    gan.main(["--resume", "--out_dir=cut"])
    whole, cut = (torch.load(d / "checkpoint.pt", weights_only=True)
                  for d in (pets / "run", tmp_path / "cut"))
    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "rng"):
        assert same_state(whole[key], cut[key]), key
    assert (cut["run"]["classes"] == ["cats", "dogs", "owls"]
            and len(cut["run"]["fixed_labels"]) == 24)
    assert ("was made with conditional=True: resuming with --conditional=False "
            "would make another run") in \
        refusal(gan, capsys, ["--resume", "--out_dir=cut", "--conditional=False", "--epochs=8"])


def test_a_generator_that_ignores_its_label_would_fail(gan, tmp_path, monkeypatch):
    """Each class of the blobs sits in its own place. After a short conditional run, the samples of
    each class must look most like that class's real mean; a G deaf to its label, like the one that
    always drew a 6, would match one class for all."""
    images, labels = fake_digits(1024, seed=3)
    data = write_dataset(tmp_path / "blobs", (images, labels), fake_digits(10))
    # 1,280 steps of small models: a few seconds
    gan.main([*SMALL, "--conditional", f"--data_dir={data}", f"--out_dir={tmp_path / 'run'}",
              "--batch_size=32", "--epochs=40", "--info_step=10000"])
    G = gan.load_generator(tmp_path / "run" / "generator.pth")
    classes = torch.arange(10).repeat_interleave(20)
    fakes = gan.generate(G, torch.randn(200, G.z_dim), classes)
    means = torch.stack([images[labels == k].float().flatten(1).mean(0) / 127.5 - 1
                         for k in range(10)])
    nearest = torch.cdist(fakes, means).argmin(1)
    assert (nearest == classes).float().mean() > 0.8
    # one label for all
    deaf = gan.generate(G, torch.randn(200, G.z_dim), torch.zeros(200, dtype=torch.long))
    assert (torch.cdist(deaf, means).argmin(1) == classes).float().mean() < 0.3
    # And D's class guesses (AC-GAN's head, which pulls G towards its class) name real
    # images' classes.
    d = torch.load(tmp_path / "run" / "discriminator.pth", weights_only=True)
    D = gan.Discriminator(d["config"]["d_widths"], classes=10)
    D.load_state_dict(d["state_dict"])
    real, labels = images.float().flatten(1) / 127.5 - 1, labels.long()
    with torch.no_grad():
        logit, guesses = D(real, labels)  # two things: real or fake, and which class
    assert logit.shape == (1024, 1) and guesses.shape == (1024, 10)
    assert (guesses.argmax(1) == labels).float().mean() > 0.9


def test_a_conditional_run_logs_its_class_terms_apart_from_the_game(pets):
    """D's loss is still the real/fake BCE that 2 ln 2 is read against;
    the class losses are their own."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(next((pets / "run" / "runs").iterdir())))
    events.Reload()

    def value(tag):
        return [e.value for e in events.Scalars(tag)]

    # 3 steps an epoch, 12 in all
    assert [e.step for e in events.Scalars("losses/D_class")] == [4, 8, 12]
    assert [e.step for e in events.Scalars("losses/G_class")] == [4, 8, 12]
    assert value("losses/D") == pytest.approx(
        [r + f for r, f in zip(value("losses/D_real"), value("losses/D_fake"))])
    assert all(v > 0 for v in value("losses/D_class") + value("losses/G_class"))
