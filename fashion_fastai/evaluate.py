"""Turn test-split predictions into honest, exact evaluation numbers, plots and a report.

Some classes keep a vocab index but have no training image ("unseen"). A model cannot
learn them, so a single accuracy hides how much of the error is unavoidable. Every
average is therefore given over all classes and over seen classes (>= 1 train image),
next to the ceiling that unseen classes impose on micro accuracy.

Everything here works on tensors / DataFrames (and, for the top-losses plot, the image
files), so it can be tested without a `Learner` and rerun on saved predictions. Files are written atomically (temp file in
the same folder, then `os.replace`) so an interrupted run never leaves a half-written
report that looks finished.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor

from .atomic import atomic_open, atomic_write_text
from .images import open_rgb

__all__ = [
    "top_k_correct", "class_table", "summarize", "stage_markdown", "atomic_write_text",
    "write_report", "plot_losses", "plot_confusion", "plot_per_class", "plot_top_losses",
    "test_losses",
]

MISSING = "–"  # shown for undefined numbers (no test image, no seen class, ...)
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ----------------------------------------------------------------------------- numbers

def _check_preds(probs: Tensor, targets: Tensor, n_classes: int | None = None) -> None:
    "Fail loudly: a silent shape/label mismatch would produce plausible but wrong numbers."
    if probs.ndim != 2:
        raise ValueError(f"probs must be [N, C], got shape {tuple(probs.shape)}")
    if targets.ndim != 1 or targets.shape[0] != probs.shape[0]:
        raise ValueError(f"targets must be [N={probs.shape[0]}], got shape {tuple(targets.shape)}")
    if n_classes is not None and probs.shape[1] != n_classes:
        raise ValueError(f"probs has {probs.shape[1]} columns but the vocab has {n_classes} classes")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= probs.shape[1]):
        raise ValueError(f"targets must lie in [0, {probs.shape[1]})")


def top_k_correct(
    probs: Tensor,  # [N, C] class scores; any monotone transform of probabilities works
    targets: Tensor,  # [N] true class indices
    k: int,  # clamped to C, so "top-5" on a 3-class stage means "any of the 3"
) -> Tensor:  # bool [N]: the target is among the k highest scores
    "Per-image hit flags, so per-class and micro/macro numbers all derive from one source."
    _check_preds(probs, targets)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, probs.shape[1])
    top = torch.topk(probs, k, dim=1).indices  # ties are broken by torch, not by us
    return (top == targets.to(top.device, torch.long).unsqueeze(1)).any(dim=1).cpu()


def class_table(
    probs: Tensor,  # [N, C] class scores on the test split
    targets: Tensor,  # [N] true class indices into `vocab`
    vocab: list[str],  # class names in model output order
    train_counts: dict[str, int],  # train images per class; missing => 0 (unseen), names outside vocab ignored
    ks: tuple[int, ...] = (1, 5),  # top-k levels to report
) -> pd.DataFrame:  # index: class (vocab order); n_train, n_test, correct_top{k}, top{k}, seen
    "Per-class counts and accuracies; keeps raw counts so every average can be recomputed exactly."
    vocab = list(vocab)
    if len(set(vocab)) != len(vocab):
        raise ValueError("vocab contains duplicate class names")
    _check_preds(probs, targets, len(vocab))
    codes = range(len(vocab))
    hits = pd.DataFrame({f"correct_top{k}": top_k_correct(probs, targets, k).numpy() for k in ks})
    hits["target"] = targets.detach().cpu().long().numpy()
    correct = hits.groupby("target").sum().reindex(codes, fill_value=0).astype("int64")
    n_test = hits["target"].value_counts().reindex(codes, fill_value=0).astype("int64")
    table = pd.DataFrame(index=pd.Index(vocab, name="class"))
    table["n_train"] = np.array([int(train_counts.get(c, 0)) for c in vocab], dtype="int64")
    table["n_test"] = n_test.to_numpy()
    for k in ks:
        table[f"correct_top{k}"] = correct[f"correct_top{k}"].to_numpy()
    denom = table["n_test"].where(table["n_test"] > 0)  # NaN => NaN accuracy, not 0
    for k in ks:
        table[f"top{k}"] = table[f"correct_top{k}"] / denom
    table["seen"] = table["n_train"] > 0
    return table


def _ratio(num, den) -> float | None:
    "Plain float for JSON; None (not NaN) when undefined, because NaN is not valid JSON."
    return float(num) / float(den) if den else None


def _mean(s: pd.Series) -> float | None:
    return float(s.mean()) if len(s) else None


def _averages(t: pd.DataFrame, ks) -> dict:
    tested = t[t["n_test"] > 0]
    out = {f"micro_top{k}": _ratio(t[f"correct_top{k}"].sum(), t["n_test"].sum()) for k in ks}
    out |= {f"macro_top{k}": _mean(tested[f"top{k}"]) for k in ks}
    return out


def summarize(
    table: pd.DataFrame,  # output of `class_table`
    ks: tuple[int, ...] = (1, 5),  # must match the ks the table was built with
) -> dict:  # JSON-ready: {"all": {...}, "seen": {...}, "ceiling_top{k}": ..., counts...}
    """Micro (per image) and macro (per class with test images) top-k, over all and seen classes.

    `ceiling_top{k}` is the share of test images whose class is seen: the best micro accuracy
    reachable if unseen classes are never hit. It is the same for every k and is kept per k
    only so that each metric has a matching key. Undefined values are None.
    """
    missing = [c for k in ks for c in (f"correct_top{k}", f"top{k}") if c not in table]
    if missing:
        raise KeyError(f"table lacks columns {missing}; was it built with ks={tuple(ks)}?")
    seen = table[table["seen"]]
    unseen_tested = table[~table["seen"] & (table["n_test"] > 0)]
    n_test = int(table["n_test"].sum())
    n_seen_test = int(seen["n_test"].sum())
    ceiling = _ratio(n_seen_test, n_test)
    return {
        "all": _averages(table, ks),
        "seen": _averages(seen, ks),
        **{f"ceiling_top{k}": ceiling for k in ks},
        "n_test": n_test,
        "n_seen_test_images": n_seen_test,
        "n_unseen_test_images": n_test - n_seen_test,
        "n_classes": int(len(table)),
        "n_classes_with_test": int((table["n_test"] > 0).sum()),
        "n_seen_classes": int(len(seen)),
        "n_seen_classes_with_test": int((seen["n_test"] > 0).sum()),
        "unseen_test_classes": [str(c) for c in unseen_tested.index],
    }


def by_part(
    table: pd.DataFrame,  # output of `class_table` for a model over several parts' classes
    parts: dict[str, list],  # part name -> its classes, e.g. {"top": [...], "rare": [...]}
    ks: tuple[int, ...] = (1, 5),
) -> dict:  # part -> {"micro_top{k}": ..., "n_test": ...}
    "Micro top-k over each part's test images, so a model over every class compares with the stage trained on that part."
    out = {}
    for name, classes in parts.items():
        t = table[table.index.isin(classes)]
        out[name] = {**{f"micro_top{k}": _ratio(t[f"correct_top{k}"].sum(), t["n_test"].sum()) for k in ks},
                     "n_test": int(t["n_test"].sum())}
    return out


# ----------------------------------------------------------------------------- markdown

def _pct(x) -> str:
    return MISSING if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _cell(s) -> str:
    "Class names may contain '|', which would split a markdown table cell."
    return str(s).replace("|", r"\|")


def _md_table(header: list[str], rows: list[list[str]], align: str) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ks_of(summary: dict) -> list[int]:
    return sorted(int(k.removeprefix("micro_top")) for k in summary["all"] if k.startswith("micro_top"))


def stage_markdown(
    title: str,  # section heading, e.g. the stage name
    table: pd.DataFrame,  # output of `class_table`
    summary: dict,  # output of `summarize` for the same table
) -> str:  # markdown section (no trailing newline)
    "One report section: averages first (what readers compare), then per class, most-trained first."
    ks = _ks_of(summary)
    s = summary
    avg_rows = [[f"{kind} top-{k}", _pct(s["all"][f"{kind}_top{k}"]), _pct(s["seen"][f"{kind}_top{k}"])]
                for kind in ("micro", "macro") for k in ks]
    avg_rows.append(["ceiling (test images in seen classes)", _pct(s[f"ceiling_top{ks[0]}"]), MISSING])
    unseen = ", ".join(_cell(c) for c in s["unseen_test_classes"]) or "none"
    counts = (f"{s['n_test']} test images; {s['n_classes']} classes, {s['n_classes_with_test']} with test images; "
              f"{s['n_seen_classes']} seen classes (>= 1 train image), {s['n_seen_classes_with_test']} of them with "
              f"test images; {s['n_unseen_test_images']} test images in unseen classes ({unseen}).")
    notes = ("Micro: over test images. Macro: mean over classes with test images. "
             "Ceiling: best micro accuracy reachable when unseen classes are never predicted.")
    if s.get("parts"):  # a model over several parts: each part's share of the answer
        part_rows = [[f"{name} part ({p['n_test']} test images)", *(_pct(p[f"micro_top{k}"]) for k in ks)]
                     for name, p in s["parts"].items()]
        notes += ("\n\n### By part (micro %)\n\n"
                  + _md_table(["part", *(f"top-{k}" for k in ks)], part_rows, "l" + "r" * len(ks)))
    per = table.sort_values("n_train", ascending=False, kind="stable")
    cls_rows = [[_cell(name), str(int(r["n_train"])), str(int(r["n_test"])), *(_pct(r[f"top{k}"]) for k in ks),
                 "" if r["seen"] else "unseen"] for name, r in per.iterrows()]
    parts = [
        f"## {title}", "", counts, "", "### Averages (%)", "",
        _md_table(["average", "all classes", "seen classes"], avg_rows, "lrr"), "", notes, "",
        "### Per class", "",
        _md_table(["class", "train imgs", "test imgs", *(f"top-{k} %" for k in ks), "note"], cls_rows,
                  "lrr" + "r" * len(ks) + "l"),
    ]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- files

def _figure(**kw) -> Figure:
    """A `Figure` outside pyplot: it renders with the non-interactive Agg canvas, so plots work on a headless training box,
    and importing this module leaves the caller's backend alone (a notebook keeps showing its own plots inline)."""
    return Figure(**kw)


def _save_fig(fig: Figure, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")


def _json_ready(x):
    "NaN/inf become null (strict JSON); numpy/torch scalars and paths become plain values."
    if isinstance(x, dict):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, (np.generic, np.ndarray, Tensor)):
        return _json_ready(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _plots_by_stage(run_dir: Path, names: list[str]) -> dict[str | None, list[Path]]:
    "A plot belongs to a stage if its stem is `name`, `*_name` or `name_*` (longest name wins)."
    out: dict[str | None, list[Path]] = {n: [] for n in names}
    out[None] = []
    for png in sorted(run_dir.glob("*.png")):
        if png.name.startswith("."):  # temp files of an in-flight atomic write
            continue
        stem = png.stem
        hits = [n for n in names if stem == n or stem.endswith(f"_{n}") or stem.startswith(f"{n}_")]
        out[max(hits, key=len) if hits else None].append(png)
    return out


def _embed(pngs: list[Path]) -> list[str]:
    return [f"![{p.stem}]({quote(p.name)})" for p in pngs]


def write_report(
    run_dir: Path,  # existing run folder; PNG plots already saved there get embedded
    stages: dict[str, tuple[pd.DataFrame, dict]],  # stage name -> (class_table, summarize) output
    header_md: str,  # markdown placed above the stage sections (run description, config...)
    extra: dict,  # more top-level keys for metrics.json (must not contain "stages" or "attributes")
    attributes: dict[str, dict[str, tuple[pd.DataFrame, dict]]] | None = None,  # stage -> other attribute -> (table, summary)
) -> None:
    """Write results.md, metrics.json and per_class_<stage>.csv (per_class_<stage>_<attribute>.csv for each other
    attribute's head, whose section follows its stage's), each atomically.

    Plots are linked, not generated, so save them before calling. A PNG named `*_<stage>.png`
    (or `<stage>_*.png`) goes into that stage's section, others into a final "Plots" section.
    """
    run_dir = Path(run_dir)
    bad = [n for n in stages if not _STAGE_NAME.match(n)]
    if bad:
        raise ValueError(f"stage names must be file-name safe ([A-Za-z0-9_.-]): {bad}")
    if {"stages", "attributes"} & set(extra):
        raise ValueError('extra must not contain the keys "stages" or "attributes"')
    attributes = attributes or {}
    for name, (table, _) in stages.items():
        atomic_write_text(run_dir / f"per_class_{name}.csv", table.to_csv())
        for attribute, (t, _) in attributes.get(name, {}).items():
            atomic_write_text(run_dir / f"per_class_{name}_{attribute}.csv", t.to_csv())
    heads = {"attributes": {n: {a: s for a, (_, s) in h.items()} for n, h in attributes.items()}} if attributes else {}
    metrics = _json_ready({"stages": {n: s for n, (_, s) in stages.items()}, **heads, **extra})
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    plots = _plots_by_stage(run_dir, list(stages))
    parts = [header_md.rstrip()] if header_md.strip() else []
    for name, (table, summary) in stages.items():
        section = stage_markdown(name, table, summary)
        if plots[name]:
            section += "\n\n### Plots\n\n" + "\n\n".join(_embed(plots[name]))
        parts.append(section)
        parts += [stage_markdown(f"{name}: {attribute}", t, s) for attribute, (t, s) in attributes.get(name, {}).items()]
    if plots[None]:
        parts.append("## Plots\n\n" + "\n\n".join(_embed(plots[None])))
    atomic_write_text(run_dir / "results.md", "\n\n".join(parts) + "\n")


# ----------------------------------------------------------------------------- plots

_NOT_METRICS = {"epoch", "train_loss", "valid_loss", "time"}


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
