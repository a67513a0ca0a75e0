"""Tests for fashion_fastai.reporting.report: the exact markdown, and files an interrupted write never leaves half
done."""

import json
import os

import numpy as np
import pandas as pd
import pytest

import fashion_fastai.core.atomic as atomic
import fashion_fastai.reporting.plots as plots
import fashion_fastai.reporting.report as report
import fashion_fastai.evaluation.scores as scores
from helpers import VOCAB  # the hand-made prediction set (its fixtures are in conftest.py)


def test_stage_markdown(table):
    md = report.stage_markdown("Stage one", table, scores.summarize(table))
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
    s = scores.summarize(table)
    plots.plot_confusion(probs, targets, VOCAB, tmp_path / "confusion_one.png", "one")
    plots.plot_per_class({"one": table}, tmp_path / "per_class.png")
    extra = {"arch": "resnet34", "epochs": np.int64(3), "lr": float("nan")}
    report.write_report(tmp_path, {"one": (table, s)}, "# Run 1\n\nheader text", extra)

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "confusion_one.png", "metrics.json", "per_class.png", "per_class_one.csv", "results.md"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"stages": {"one": s}, "arch": "resnet34", "epochs": 3, "lr": None}

    md = (tmp_path / "results.md").read_text()
    assert md.startswith("# Run 1\n\nheader text\n\n## one")
    assert report.stage_markdown("one", table, s) in md
    assert "![confusion_one](confusion_one.png)" in md
    assert md.index("confusion_one.png") < md.index("\n## Plots") < md.index("![per_class](per_class.png)")

    back = pd.read_csv(tmp_path / "per_class_one.csv", index_col="class")
    pd.testing.assert_frame_equal(back, table)


def test_write_report_rejects_bad_input(tmp_path, table):
    s = scores.summarize(table)
    with pytest.raises(ValueError):
        report.write_report(tmp_path, {"../x": (table, s)}, "", {})
    with pytest.raises(ValueError):
        report.write_report(tmp_path, {"one": (table, s)}, "", {"stages": 1})
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "results.md"
    atomic.atomic_write_text(target, "old")
    assert target.read_text() == "old"

    def boom(fd):  # data already written to the temp file, then the write "fails"
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write_text(target, "new " * 10_000)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.md"]


def test_write_report_failure_leaves_previous_files(tmp_path, table, monkeypatch):
    s = scores.summarize(table)
    report.write_report(tmp_path, {"one": (table, s)}, "v1", {})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_replace = os.replace

    def fail_on_results(src, dst):
        if str(dst).endswith("results.md"):
            raise OSError("interrupted")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", fail_on_results)
    with pytest.raises(OSError, match="interrupted"):
        report.write_report(tmp_path, {"one": (table, s)}, "v2", {})
    assert (tmp_path / "results.md").read_bytes() == before["results.md"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no temp file left
