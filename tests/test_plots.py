"""Tests for fashion_fastai.reporting.plots: every plot writes a PNG, atomically, and shows what it should."""

import math

import pandas as pd
import pytest
import torch

import fashion_fastai.reporting.plots as plots
import fashion_fastai.evaluation.scores as scores
from helpers import CASES, SCORES, VOCAB  # the hand-made prediction set (its fixtures are in conftest.py)


def test_plot_failure_leaves_previous_png(tmp_path, preds, monkeypatch):
    path = tmp_path / "confusion.png"
    plots.plot_confusion(*preds, VOCAB, path, "t")
    old = path.read_bytes()

    def half_save(self, f, **kw):
        f.write(b"\x89PNG partial")
        raise RuntimeError("crash while saving")

    monkeypatch.setattr(plots.Figure, "savefig", half_save)
    with pytest.raises(RuntimeError):
        plots.plot_confusion(*preds, VOCAB, path, "t")
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def test_plots_write_png(tmp_path, preds, table):
    probs, targets = preds
    history = pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [2.0, 1.2, 0.9], "valid_loss": [1.8, 1.3, 1.1],
                            "accuracy": [0.4, 0.55, 0.6], "time": ["00:10", "00:10", "00:09"]})
    plots.plot_losses(history, tmp_path / "loss.png", "stage one")
    plots.plot_losses(history[["epoch", "train_loss", "valid_loss"]], tmp_path / "loss_nometrics.png", "x")
    plots.plot_confusion(probs, targets, VOCAB, tmp_path / "cm.png", "stage one")
    t2 = scores.class_table(probs[:, :3].contiguous(), torch.tensor([0, 1, 2, 2, 1, 0, 0]), ["x", "y", "z"], {"x": 4})
    plots.plot_per_class({"one": table, "two": t2}, tmp_path / "per_class.png")
    for name in ("loss.png", "loss_nometrics.png", "cm.png", "per_class.png"):
        assert _is_png(tmp_path / name), name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cm.png", "loss.png", "loss_nometrics.png", "per_class.png"]


def test_test_losses_exact(preds):
    probs, targets = preds
    expected = [-math.log(SCORES[rank]) for _, rank in CASES]
    assert plots.test_losses(probs, targets).tolist() == pytest.approx(expected)


def _image_files(folder, n):
    from PIL import Image
    folder.mkdir()
    files = []
    for i in range(n):
        f = folder / f"{i}.jpg"
        Image.new("RGB", (60, 80), (40 * i % 256, 90, 200)).save(f)
        files.append(str(f))
    return files


def test_plot_top_losses_shows_the_worst_images_only(tmp_path, preds):
    probs, targets = preds
    files = _image_files(tmp_path / "imgs", len(CASES))
    opened = []
    def open_image(f):
        from PIL import Image
        opened.append(f)
        return Image.open(f).convert("RGB")
    stage2 = dict(files=files[:2], probs=probs[:2], targs=targets[:2], vocab=VOCAB)
    plots.plot_top_losses({"one": dict(files=files, probs=probs, targs=targets, vocab=VOCAB), "two": stage2},
                       tmp_path / "top_losses.png", k=3, open_image=open_image)
    assert _is_png(tmp_path / "top_losses.png")
    # stage one: the two rank-5 cases (images 1 and 4, equal losses: either order), then the rank-4 one (image 5);
    # stage two: both of its images, worst first
    assert sorted(opened[:2]) == [files[1], files[4]] and opened[2:] == [files[5], files[1], files[0]]


def test_plot_top_losses_checks_its_input(tmp_path, preds):
    probs, targets = preds
    with pytest.raises(ValueError, match="2 files but 7 predictions"):
        plots.plot_top_losses({"one": dict(files=["a", "b"], probs=probs, targs=targets, vocab=VOCAB)},
                              tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_importing_plots_keeps_the_matplotlib_backend():
    "A notebook that imports the package must keep drawing its plots inline: no `matplotlib.use` at import."
    import subprocess, sys
    code = ("import matplotlib; matplotlib.use('svg'); import fashion_fastai.reporting.plots, "
            "fashion_fastai.reporting.report, fashion_fastai.train; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"
