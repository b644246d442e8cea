"""benchmarks/quality.py on tiny generated digits: it trains its CNN, caches it, and ranks samples."""
import sys

import torch

from conftest import ROOT
from idx import fake_digits, write_dataset

sys.path.insert(0, str(ROOT / "benchmarks"))
import quality  # noqa: E402


def test_quality_scores_real_digits_above_noise(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", fake_digits(256), fake_digits(256, seed=1))
    real = fake_digits(256, seed=2)[0].float().div(255).unsqueeze(1)
    noise = torch.rand(256, 1, 28, 28)
    torch.save(real, tmp_path / "real.pt")
    torch.save(noise, tmp_path / "noise.pt")
    args = [f"--data_dir={data}", f"--cache={tmp_path / 'cache'}", "--n=256"]
    accuracy, reference, good = quality.main([str(tmp_path / "real.pt"), *args])
    assert accuracy > 0.9  # the blobs are easy to tell apart
    assert len(list((tmp_path / "cache").iterdir())) == 1  # trained once, then cached
    _, _, bad = quality.main([str(tmp_path / "noise.pt"), *args])
    assert good["fid"] < bad["fid"] and good["is"] > bad["is"]
    assert abs(sum(good["shares"]) - 1) < 1e-3 and good["min_share"] > 0.03
    assert (tmp_path / "digit_shares.png").is_file()
    assert "real held-out digits" in capsys.readouterr().out
