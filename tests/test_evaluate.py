"""Exact-number tests for fashion_fastai.evaluate on a hand-made prediction set.

Fixture: 6 classes a..f, 7 test images.
  train: a=10 b=5 c=0 (unseen) d=3 e=2 f=1;  test: a=2 b=2 c=1 d=0 e=1 f=1.
Rank of the true class in each image's scores (0 = best) and the resulting hits:
  a:0 (top1, top5)  a:5 (-, -)  b:1 (-, top5)  b:0 (top1, top5)  c:5 (-, -)  e:4 (-, top5)  f:0 (top1, top5)
"""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

import fashion_fastai.atomic as atomic
import fashion_fastai.evaluate as ev

VOCAB = ["a", "b", "c", "d", "e", "f"]
TRAIN = {"a": 10, "b": 5, "d": 3, "e": 2, "f": 1, "not_in_vocab": 99}  # c missing => unseen
SCORES = [0.40, 0.25, 0.15, 0.10, 0.06, 0.04]  # strictly decreasing: no ties for topk
CASES = [(0, 0), (0, 5), (1, 1), (1, 0), (2, 5), (4, 4), (5, 0)]  # (target, rank of target)


def _row(target, rank):
    "Scores where `target` sits at `rank`; the other classes fill the remaining ranks in index order."
    order = [c for c in range(len(VOCAB)) if c != target]
    order.insert(rank, target)
    row = torch.empty(len(VOCAB))
    row[torch.tensor(order)] = torch.tensor(SCORES)
    return row


@pytest.fixture
def preds():
    probs = torch.stack([_row(t, r) for t, r in CASES])
    targets = torch.tensor([t for t, _ in CASES])
    return probs, targets


@pytest.fixture
def table(preds):
    return ev.class_table(*preds, VOCAB, TRAIN)


def test_fixture_ranks(preds):
    probs, targets = preds
    ranks = (probs > probs.gather(1, targets[:, None])).sum(1)
    assert ranks.tolist() == [r for _, r in CASES]


def test_top_k_correct(preds):
    probs, targets = preds
    assert ev.top_k_correct(probs, targets, 1).tolist() == [True, False, False, True, False, False, True]
    assert ev.top_k_correct(probs, targets, 5).tolist() == [True, False, True, True, False, True, True]
    assert ev.top_k_correct(probs, targets, 1).dtype == torch.bool


def test_top_k_clamps_to_n_classes():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    targets = torch.tensor([2, 0])
    assert ev.top_k_correct(probs, targets, 10).tolist() == [True, True]
    assert ev.top_k_correct(probs, targets, 3).tolist() == [True, True]
    assert ev.top_k_correct(probs, targets, 2).tolist() == [False, False]
    with pytest.raises(ValueError):
        ev.top_k_correct(probs, targets, 0)


def test_class_table_exact(table):
    assert list(table.index) == VOCAB and table.index.name == "class"
    assert list(table.columns) == ["n_train", "n_test", "correct_top1", "correct_top5", "top1", "top5", "seen"]
    assert table["n_train"].tolist() == [10, 5, 0, 3, 2, 1]
    assert table["n_test"].tolist() == [2, 2, 1, 0, 1, 1]
    assert table["correct_top1"].tolist() == [1, 1, 0, 0, 0, 1]
    assert table["correct_top5"].tolist() == [1, 2, 0, 0, 1, 1]
    assert table["seen"].tolist() == [True, True, False, True, True, True]
    exp1 = {"a": 0.5, "b": 0.5, "c": 0.0, "e": 0.0, "f": 1.0}
    exp5 = {"a": 0.5, "b": 1.0, "c": 0.0, "e": 1.0, "f": 1.0}
    for c in exp1:
        assert table.loc[c, "top1"] == pytest.approx(exp1[c])
        assert table.loc[c, "top5"] == pytest.approx(exp5[c])
    assert math.isnan(table.loc["d", "top1"]) and math.isnan(table.loc["d", "top5"])


def test_class_table_validates(preds):
    probs, targets = preds
    with pytest.raises(ValueError):
        ev.class_table(probs, targets, VOCAB[:-1], TRAIN)  # vocab / probs width mismatch
    with pytest.raises(ValueError):
        ev.class_table(probs, targets, ["a", "a", "c", "d", "e", "f"], TRAIN)
    with pytest.raises(ValueError):
        ev.class_table(probs, targets[:-1], VOCAB, TRAIN)
    with pytest.raises(ValueError):
        ev.class_table(probs, torch.tensor([0, 0, 0, 0, 0, 0, 6]), VOCAB, TRAIN)


def test_summarize_exact(table):
    s = ev.summarize(table)
    assert s["all"] == pytest.approx({"micro_top1": 3 / 7, "micro_top5": 5 / 7,
                                      "macro_top1": 2.0 / 5, "macro_top5": 3.5 / 5})
    assert s["seen"] == pytest.approx({"micro_top1": 3 / 6, "micro_top5": 5 / 6,
                                       "macro_top1": 2.0 / 4, "macro_top5": 3.5 / 4})
    assert s["ceiling_top1"] == pytest.approx(6 / 7)
    assert s["ceiling_top5"] == pytest.approx(6 / 7)
    assert s["all"]["micro_top1"] <= s["ceiling_top1"]
    assert {k: s[k] for k in ("n_test", "n_seen_test_images", "n_unseen_test_images", "n_classes",
                              "n_classes_with_test", "n_seen_classes", "n_seen_classes_with_test")} == {
        "n_test": 7, "n_seen_test_images": 6, "n_unseen_test_images": 1, "n_classes": 6,
        "n_classes_with_test": 5, "n_seen_classes": 5, "n_seen_classes_with_test": 4}
    assert s["unseen_test_classes"] == ["c"]
    # plain python types only, so json works without a custom encoder
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    assert all(type(v) is float for v in s["all"].values())
    assert type(s["n_test"]) is int


def test_summarize_undefined_is_none():
    t = ev.class_table(torch.empty(0, 2), torch.empty(0, dtype=torch.long), ["x", "y"], {"x": 1})
    s = ev.summarize(t)
    assert s["all"] == {"micro_top1": None, "micro_top5": None, "macro_top1": None, "macro_top5": None}
    assert s["ceiling_top1"] is None and s["n_test"] == 0
    assert "–" in ev.stage_markdown("empty", t, s)


def test_stage_markdown(table):
    md = ev.stage_markdown("Stage one", table, ev.summarize(table))
    assert md.startswith("## Stage one")
    assert "| micro top-1 | 42.86 | 50.00 |" in md
    assert "| micro top-5 | 71.43 | 83.33 |" in md
    assert "| macro top-1 | 40.00 | 50.00 |" in md
    assert "| macro top-5 | 70.00 | 87.50 |" in md
    assert "| ceiling (test images in seen classes) | 85.71 | – |" in md
    assert "| d | 3 | 0 | – | – |  |" in md
    assert "| c | 0 | 1 | 0.00 | 0.00 | unseen |" in md
    class_rows = [ln.split(" | ")[0][2:] for ln in md.splitlines()
                  if ln.startswith("| ") and ln.split(" | ")[0][2:] in VOCAB]
    assert class_rows == ["a", "b", "d", "e", "f", "c"]  # n_train descending


def test_write_report(tmp_path, preds, table):
    probs, targets = preds
    s = ev.summarize(table)
    ev.plot_confusion(probs, targets, VOCAB, tmp_path / "confusion_one.png", "one")
    ev.plot_per_class({"one": table}, tmp_path / "per_class.png")
    extra = {"arch": "resnet34", "epochs": np.int64(3), "lr": float("nan")}
    ev.write_report(tmp_path, {"one": (table, s)}, "# Run 1\n\nheader text", extra)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "confusion_one.png", "metrics.json", "per_class.png", "per_class_one.csv", "results.md"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"stages": {"one": s}, "arch": "resnet34", "epochs": 3, "lr": None}

    md = (tmp_path / "results.md").read_text()
    assert md.startswith("# Run 1\n\nheader text\n\n## one")
    assert ev.stage_markdown("one", table, s) in md
    assert "![confusion_one](confusion_one.png)" in md
    assert md.index("confusion_one.png") < md.index("\n## Plots") < md.index("![per_class](per_class.png)")

    back = pd.read_csv(tmp_path / "per_class_one.csv", index_col="class")
    pd.testing.assert_frame_equal(back, table)


def test_write_report_rejects_bad_input(tmp_path, table):
    s = ev.summarize(table)
    with pytest.raises(ValueError):
        ev.write_report(tmp_path, {"../x": (table, s)}, "", {})
    with pytest.raises(ValueError):
        ev.write_report(tmp_path, {"one": (table, s)}, "", {"stages": 1})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "results.md"
    ev.atomic_write_text(target, "old")
    assert target.read_text() == "old"

    def boom(fd):  # data already written to the temp file, then the write "fails"
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        ev.atomic_write_text(target, "new " * 10_000)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]


def test_write_report_failure_leaves_previous_files(tmp_path, table, monkeypatch):
    s = ev.summarize(table)
    ev.write_report(tmp_path, {"one": (table, s)}, "v1", {})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace = os.replace

    def fail_on_results(src, dst):
        if str(dst).endswith("results.md"):
            raise OSError("interrupted")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", fail_on_results)
    with pytest.raises(OSError, match="interrupted"):
        ev.write_report(tmp_path, {"one": (table, s)}, "v2", {})
    assert (tmp_path / "results.md").read_bytes() == before["results.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no temp file left


def test_plot_failure_leaves_previous_png(tmp_path, preds, monkeypatch):
    path = tmp_path / "confusion.png"
    ev.plot_confusion(*preds, VOCAB, path, "t")
    old = path.read_bytes()

    def half_save(self, f, **kw):
        f.write(b"\x89PNG partial")
        raise RuntimeError("crash while saving")

    monkeypatch.setattr(ev.Figure, "savefig", half_save)
    with pytest.raises(RuntimeError):
        ev.plot_confusion(*preds, VOCAB, path, "t")
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
    ev.plot_losses(history, tmp_path / "loss.png", "stage one")
    ev.plot_losses(history[["epoch", "train_loss", "valid_loss"]], tmp_path / "loss_nometrics.png", "x")
    ev.plot_confusion(probs, targets, VOCAB, tmp_path / "cm.png", "stage one")
    t2 = ev.class_table(probs[:, :3].contiguous(), torch.tensor([0, 1, 2, 2, 1, 0, 0]), ["x", "y", "z"], {"x": 4})
    ev.plot_per_class({"one": table, "two": t2}, tmp_path / "per_class.png")
    for name in ("loss.png", "loss_nometrics.png", "cm.png", "per_class.png"):
        assert _is_png(tmp_path / name), name
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cm.png", "loss.png", "loss_nometrics.png", "per_class.png"]


def test_test_losses_exact(preds):
    probs, targets = preds
    expected = [-math.log(SCORES[rank]) for _, rank in CASES]
    assert ev.test_losses(probs, targets).tolist() == pytest.approx(expected)


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
    ev.plot_top_losses({"one": dict(files=files, probs=probs, targs=targets, vocab=VOCAB), "two": stage2},
                       tmp_path / "top_losses.png", k=3, open_image=open_image)
    assert _is_png(tmp_path / "top_losses.png")
    # stage one: the two rank-5 cases (images 1 and 4, equal losses: either order), then the rank-4 one (image 5);
    # stage two: both of its images, worst first
    assert sorted(opened[:2]) == [files[1], files[4]] and opened[2:] == [files[5], files[1], files[0]]


def test_plot_top_losses_checks_its_input(tmp_path, preds):
    probs, targets = preds
    with pytest.raises(ValueError, match="2 files but 7 predictions"):
        ev.plot_top_losses({"one": dict(files=["a", "b"], probs=probs, targs=targets, vocab=VOCAB)}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_importing_evaluate_keeps_the_matplotlib_backend():
    "A notebook that imports the package must keep drawing its plots inline: no `matplotlib.use` at import."
    import subprocess, sys
    code = ("import matplotlib; matplotlib.use('svg'); import fashion_fastai.evaluate, fashion_fastai.train; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"
