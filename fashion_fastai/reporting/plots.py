"""The run's plots as PNG files: losses per epoch, confusion matrix, per-class accuracy, highest test losses.

A plot shows what no average does (over-fitting, look-alike classes, wrong labels).  Figures are drawn outside pyplot,
so they render on a headless training box and importing this module leaves a notebook's backend alone; each PNG is
written atomically, so an interrupted run never leaves a truncated image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from fashion_fastai.core.atomic import atomic_open
from fashion_fastai.data.pixels import open_rgb
from fashion_fastai.evaluation.scores import _check_preds

_NOT_METRICS = {"epoch", "train_loss", "valid_loss", "time"}


def _figure(**kw) -> Figure:
    """A `Figure` outside pyplot: it renders with the non-interactive Agg canvas, so plots work on a headless training
    box, and importing this module leaves the caller's backend alone (a notebook keeps showing its own plots inline)."""
    return Figure(**kw)


def _save_fig(fig: Figure, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")


def plot_losses(
    history: pd.DataFrame,  # one row per epoch: epoch, train_loss, valid_loss, then any metrics
    path: Path,  # PNG to write (atomically)
    title: str,  # figure title, e.g. the stage name
) -> None:
    "Losses and metrics side by side: over/under-fitting shows in the gap, not in the final number."
    h = history.copy()
    x = pd.to_numeric(h["epoch"], errors="coerce")
    metrics = [c for c in h.columns if c not in _NOT_METRICS
               and pd.to_numeric(h[c], errors="coerce").notna().any()]
    fig = _figure(figsize=(11 if metrics else 6, 4))
    axes = fig.subplots(1, 2 if metrics else 1, squeeze=False)
    ax = axes[0, 0]
    for col in ("train_loss", "valid_loss"):
        if col in h:
            ax.plot(x, pd.to_numeric(h[col], errors="coerce"), marker="o", label=col)
    ax.set(xlabel="epoch", ylabel="loss", title="loss")
    ax.legend()
    if metrics:
        ax2 = axes[0, 1]
        for col in metrics:
            ax2.plot(x, pd.to_numeric(h[col], errors="coerce"), marker="o", label=col)
        ax2.set(xlabel="epoch", title="validation metrics")
        ax2.legend()
    for a in axes.flat:
        a.grid(alpha=0.3)
        a.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title)
    fig.tight_layout()
    _save_fig(fig, path)


def plot_confusion(
    probs: Tensor,  # [N, C] class scores
    targets: Tensor,  # [N] true class indices
    vocab: list[str],  # class names, len C
    path: Path,  # PNG to write (atomically)
    title: str,  # figure title
) -> None:
    "Row-normalised so rare classes are as visible as frequent ones; rows without test images stay blank."
    _check_preds(probs, targets, len(vocab))
    n = len(vocab)
    preds = probs.argmax(dim=1).cpu().long()
    t = targets.detach().cpu().long()
    counts = torch.bincount(t * n + preds, minlength=n * n).reshape(n, n).double()
    row = counts.sum(dim=1, keepdim=True)
    cm = (counts / row).numpy()  # 0/0 -> NaN -> blank row
    side = max(5.0, 0.38 * n + 2.5)
    fig = _figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(cm), cmap="Blues", vmin=0, vmax=1)
    ax.set_facecolor("0.9")
    ylabels = [f"{c} (n={int(k)})" for c, k in zip(vocab, row.squeeze(1).tolist())]
    ax.set_xticks(range(n), labels=vocab, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels=ylabels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true (test images)", title=f"{title}\n(row-normalised, top-1)")
    if n <= 30:
        for i, j in zip(*np.nonzero(np.nan_to_num(cm) > 0)):
            ax.text(j, i, f"{cm[i, j]:.2f}".lstrip("0"), ha="center", va="center", fontsize=6,
                    color="white" if cm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true-class images")
    fig.tight_layout()
    _save_fig(fig, path)


def plot_per_class(
    tables: dict[str, pd.DataFrame],  # stage name -> class_table output
    path: Path,  # PNG to write (atomically)
) -> None:
    "Accuracy against training-set size, one panel per stage; unseen classes are marked, not hidden."
    names = list(tables)
    heights = [max(len(t), 1) for t in tables.values()]
    fig = _figure(figsize=(9, 1.2 * len(names) + 0.24 * sum(heights)))
    axes = fig.subplots(len(names), 1, squeeze=False, gridspec_kw={"height_ratios": heights})
    for ax, name in zip(axes[:, 0], names):
        t = tables[name].sort_values("n_train", ascending=False, kind="stable")
        y = np.arange(len(t))
        acc = (t["top1"] * 100).fillna(0).to_numpy()
        colors = np.where(t["seen"].to_numpy(), "tab:blue", "tab:red")
        ax.barh(y, acc, color=colors)
        for yi, (_, r) in zip(y, t.iterrows()):
            note = "no test images" if r["n_test"] == 0 else f"{100 * r['top1']:.1f}%"
            note += "" if r["seen"] else " (unseen)"
            ax.text(min(acc[yi], 100) + 1, yi, note, va="center", fontsize=7)
        ax.set_yticks(y, labels=[f"{c} ({int(r['n_train'])}/{int(r['n_test'])})" for c, r in t.iterrows()], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 118)
        ax.set_xticks(range(0, 101, 20))
        ax.grid(axis="x", alpha=0.3)
        ax.set(title=f"{name}: per-class top-1 accuracy (labels: class (train/test imgs))", xlabel="top-1 %")
    fig.tight_layout()
    _save_fig(fig, path)


def test_losses(probs: Tensor, targets: Tensor) -> Tensor:
    "Per-image cross-entropy of the predicted probabilities (what fastai's loss is, without label smoothing)."
    _check_preds(probs, targets)
    p = probs.detach().cpu().double().gather(1, targets.detach().cpu().long()[:, None]).squeeze(1)
    return -p.clamp_min(1e-12).log()


def plot_top_losses(
    stages: dict[str, dict],  # stage name -> dict(files=[N paths], probs=[N, C], targs=[N], vocab=[C])
    path: Path,  # PNG to write (atomically)
    k: int = 8,  # images per stage (fewer if a stage has fewer test images)
    open_image=open_rgb,  # path -> PIL image, decoded as in training
) -> None:
    """The k test images with the highest loss in each stage, one row per stage, titled like fastai's `plot_top_losses`:
    prediction / actual / loss / probability of the prediction. Confident mistakes show look-alike classes and wrong
    labels in the data, which no accuracy number does. Only the k images shown are decoded."""
    picks = {}
    for name, s in stages.items():
        probs, targs = torch.as_tensor(s["probs"]), torch.as_tensor(s["targs"])
        _check_preds(probs, targs, len(s["vocab"]))
        if len(s["files"]) != len(probs):
            raise ValueError(f"{name}: {len(s['files'])} files but {len(probs)} predictions")
        losses = test_losses(probs, targs)
        picks[name] = [(i, float(losses[i])) for i in losses.topk(min(k, len(losses))).indices.tolist()]
    cols = max([len(v) for v in picks.values()] + [1])
    fig = _figure(figsize=(1.9 * cols, 2.9 * max(len(picks), 1) + 0.3))
    axes = fig.subplots(max(len(picks), 1), cols, squeeze=False)
    for (name, chosen), ax_row in zip(picks.items(), axes):
        s = stages[name]
        for ax in ax_row:
            ax.set_xticks([]); ax.set_yticks([]); ax.set_frame_on(False)
        ax_row[0].set_ylabel(name, fontsize=10)
        if not chosen:
            ax_row[0].text(0.5, 0.5, "no test images", ha="center", va="center", transform=ax_row[0].transAxes)
        for ax, (i, loss) in zip(ax_row, chosen):
            p = torch.as_tensor(s["probs"][i]).float()
            pred = int(p.argmax())
            ax.imshow(np.asarray(open_image(s["files"][i])))
            ax.set_title(f"{s['vocab'][pred]}\n{s['vocab'][int(s['targs'][i])]}\n{loss:.2f} / {float(p[pred]):.2f}",
                         fontsize=7)
    fig.suptitle("Highest test losses: prediction / actual / loss / probability", fontsize=10)
    fig.tight_layout()
    _save_fig(fig, path)


def plot_reliability(
    curves: dict,  # {label: [(mean confidence, accuracy, photos) per bin]} (calibration.reliability)
    path: Path,  # PNG to write (atomically)
    title: str,
) -> None:
    """A reliability diagram: accuracy against confidence per bin, the diagonal being a probability that means what it
    says."""
    fig = _figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for label, points in curves.items():
        if points:
            conf, acc, n = zip(*points)
            ax.plot(conf, acc, marker="o", label=f"{label} ({sum(n)} photos)")
    ax.set(xlabel="confidence (best class's probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    _save_fig(fig, path)
