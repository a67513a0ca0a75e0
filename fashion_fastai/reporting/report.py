"""A run's report files: results.md to read, metrics.json for scripts, per_class_<stage>.csv with the raw counts.

They are built from `scores`' tables and summaries, not from a `Learner`, so a report can be rewritten from saved
predictions.  Each file is written atomically (a temporary file in the same folder, then renamed), so an interrupted run
never leaves a half-written report that looks finished.
"""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np
import pandas as pd
from torch import Tensor

from fashion_fastai.core.atomic import atomic_write_text
from fashion_fastai.training.config import FLIP
from fashion_fastai.data.holdout import AUTO
from fashion_fastai.core.schema import LABEL
from fashion_fastai.core.models import ALL, FIRST, JOINED, TOP, ModelSpec, body_source, spec
from fashion_fastai.reporting.plots import plot_confusion, plot_per_class, plot_reliability, plot_top_losses

# the report reads a finished run; the run imports this module
if TYPE_CHECKING: from fashion_fastai.training.run import Run

MISSING = "–"  # shown for undefined numbers (no test image, no seen class, ...)
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
    joined = [f"zs_top{k}" for k in ks if f"zs_top{k}" in per]  # with zero-shot answers (`with_answer_numbers`)
    note = lambda r: "" if r["seen"] else "zero-shot" if r.get("zero_shot", False) else "unseen"
    cls_rows = [[_cell(name), str(int(r["n_train"])), str(int(r["n_test"])), *(_pct(r[f"top{k}"]) for k in ks),
                 *(_pct(r[c]) for c in joined), note(r)] for name, r in per.iterrows()]
    header = ["class", "train imgs", "test imgs", *(f"top-{k} %" for k in ks),
              *(f"with zero-shot top-{c.removeprefix('zs_top')} %" for c in joined), "note"]
    parts = [
        f"## {title}", "", counts, "", "### Averages (%)", "",
        _md_table(["average", "all classes", "seen classes"], avg_rows, "lrr"), "", notes, "",
        *([answering_markdown(s["answering"]), ""] if s.get("answering") else []),
        "### Per class", "",
        _md_table(header, cls_rows, "lrr" + "r" * (len(ks) + len(joined)) + "l"),
    ]
    return "\n".join(parts)


def answering_markdown(a: dict) -> str:
    """A model's calibration and zero-shot numbers (calibrate.py's, JSON-ready): both ways of answering side by side on
    the test split, with what was fitted on the holdout."""
    lines = ["### Calibration and zero-shot answers", ""]
    if not a.get("heads"):
        return "\n".join(lines + [f"None: {a.get('why_not', 'not fitted')}."])
    closed, zs = a["heads"][LABEL], a.get("zero_shot")
    ways = [("closed-set (the trained classes alone)", closed, a.get("closed_summary"))]
    if zs: ways.append(("with zero-shot answers", zs, zs["summary"]))
    num = lambda v, f="{:.2f}": MISSING if v is None else f.format(v)
    rows = [["micro top-1 %", *(_pct(sm["all"]["micro_top1"]) if sm else MISSING for _, _, sm in ways)],
            ["micro top-5 %", *(_pct(sm["all"]["micro_top5"]) if sm else MISSING for _, _, sm in ways)],
            ["macro top-1 %", *(_pct(sm["all"]["macro_top1"]) if sm else MISSING for _, _, sm in ways)],
            ["temperature (fitted on the holdout)", *(num(w["temperature"], "{:.3f}") for _, w, _ in ways)],
            ["ECE % of the softmax", *(_pct(w["ece_before"]) for _, w, _ in ways)],
            ["ECE % calibrated", *(_pct(w["ece_after"]) for _, w, _ in ways)],
            *([["ECE % calibrated, photos of a class it can name (their share %)",
                *(f"{_pct(w.get('ece_nameable'))} ({_pct(w.get('nameable'))})" for _, w, _ in ways)]]
              if any("ece_nameable" in w for _, w, _ in ways) else []),
            [f"coverage %: photos at >= {a['review_prob']:g} calibrated", *(_pct(w["coverage"]) for _, w, _ in ways)],
            ["precision %: their top-1", *(_pct(w["precision"]) for _, w, _ in ways)]]
    if zs:
        rows += [["photos of zero-shot classes: top-1 %", _pct(zs["closed_zero_shot_classes_top1"]),
                  _pct(zs["zero_shot_classes_top1"])],
                 ["answered with a zero-shot class: holdout % / test %", MISSING,
                  f"{_pct(zs['holdout_routed'])} / {_pct(zs['test_routed'])}"]]
    lines.append(_md_table(["", *(w for w, _, _ in ways)], rows, "l" + "r" * len(ways)))
    lines += ["", f"Fitted on {a['holdout_images']} holdout photos (even years, never trained on), scored once on the "
                  f"test split. ECE: expected calibration error over 15 confidence bins."
              + (" A class it can name has training photos (closed-set), or a zero-shot row too (with zero-shot "
                 "answers): a photo of any other class is wrong at every confidence."
                 if any("ece_nameable" in w for _, w, _ in ways) else "")]
    if zs and "boost" in zs:
        lines.append(f"Zero-shot classes ({len(zs['classes'])}): {', '.join(_cell(c) for c in zs['classes'])}; gate "
                     f"boost {zs['boost']:.3g}, the largest that answers at most {100 * zs['max_routed']:g}% of the "
                     f"holdout with one; {zs['test_images_of_zero_shot_classes']} test photos are of these classes.")
    elif zs:
        lines.append(f"Zero-shot classes: the stages' ({len(zs['classes'])}), each behind its stage's own gate; "
                     f"{zs['test_images_of_zero_shot_classes']} test photos are of these classes; photos of trained "
                     f"classes answered with one: {_pct(zs['trained_test_routed'])} of the test split.")
    else: lines.append(f"No zero-shot answers: {a.get('why_not', '')}.")
    if a.get("prior"):
        p = a["prior"]
        lines.append(f"Logit adjustment for the training counts (Menon et al., 2021): strength {p['strength']:g}, "
                     "the best of " + ", ".join(f"{float(k):g} ({_pct(v)})" for k, v in p["holdout_top1"].items())
                     + " by holdout top-1 of the trained classes.")
    if a.get("candidates"):
        lines += ["", parts_markdown(a)]
    lines += trust_markdown(a)
    others = {h: v for h, v in a["heads"].items() if h != LABEL}
    if others:
        lines += ["", "Other heads, ECE % softmax -> calibrated (temperature): " + "; ".join(
            f"{h} {_pct(v['ece_before'])} -> {_pct(v['ece_after'])} ({v['temperature']:.3f})"
            for h, v in others.items())]
    return "\n".join(lines)


def trust_markdown(a: dict) -> list:
    """What a catalogue can trust (evaluation/trust.py): the attributes the article type decides, each way on the
    holdout and the test split; the review rule; what zero-shot takes from each trained class and gives."""
    lines, ways = [], {"heads": "its head", "article_type": "from the article type",
                       "heads_x_article_type": "head x article type"}
    if a.get("attributes"):
        rows = [[f"{attr} ({d['photos']} photos)", ways[w] + (" (kept)" if w == d["kept"] else ""),
                 _pct(d["holdout"][w]["top1"]), _pct(d["holdout"][w]["consistent"]), _pct(d["test"][w]["top1"]),
                 _pct(d["test"][w]["consistent"])] for attr, d in a["attributes"].items() for w in ways]
        lines += ["", "Attributes the article type decides, each way of answering them: top-1 % and the share agreeing "
                      "with the answered article type %, on the holdout (where the way is chosen: the most accurate of "
                      "those agreeing on 99%) and the test split:", "",
                  _md_table(["attribute", "way", "holdout top-1", "holdout agree", "test top-1", "test agree"], rows,
                            "llrrrr")]
    reviews = [(w, a[k]) for w, k in (("closed-set", "review"), ("with zero-shot", "review_zero_shot")) if a.get(k)]
    if reviews:
        rows = [[w, f"{r['threshold']:.3f}", _pct(r["coverage"]), _pct(r["precision"]),
                 _pct(r.get("precision_at_min_unflagged")), _pct(r["left_out_flagged"]),
                 _pct(r["test"]["coverage"]), _pct(r["test"]["precision"]),
                 _pct(r["test"].get("untrained_right_or_flagged"))] for w, r in reviews]
        r = reviews[-1][1]
        lines += ["", f"Review rule (`uncertain`): an answer is flagged below the threshold, the lowest at which the "
                      f"holdout's unflagged answers are {100 * r['target_precision']:g}% right, raised to flag "
                      f"{100 * r['target_novel']:g}% of never-seen products (made on the holdout by leaving each "
                      f"subCategory out) unless that would leave under {100 * r['min_unflagged']:g}% unflagged:", "",
                  _md_table(["answer", "threshold", "holdout unflagged %", "holdout precision %",
                             f"holdout precision at {100 * r['min_unflagged']:g}% unflagged",
                             "never-seen flagged %", "test unflagged %", "test precision %",
                             "test: untrained classes right or flagged %"], rows, "lrrrrrrrr")]
    col = a.get("collateral")
    if col and col.get("trained_photos_taken") is not None:
        rows = [[_cell(r["cls"]), "trained" if r["trained"] else "no training photo", str(r["photos"]),
                 _pct(r["closed_top1"]), _pct(r["zero_shot_top1"]), _pct(r["answered_zero_shot"])]
                for r in a.get("collateral_classes", [])]
        lines += ["", f"What zero-shot takes and gives on the test split: {_pct(col['trained_photos_taken'])}% of the "
                      f"photos of trained classes are answered with a zero-shot class; most taken: "
                      f"{_cell(col['most_taken_class'])} ({_pct(col['most_taken'])}%), most top-1 lost: "
                      f"{_cell(col['most_lost_class'])} ({_pct(col['most_lost'])} points); "
                      f"{col['classes_losing_over_3_points']} trained classes lose over 3 points.", "",
                  _md_table(["class", "", "photos", "closed-set top-1 %", "with zero-shot top-1 %",
                             "answered zero-shot %"], rows, "llrrrr")]
    return lines


def parts_markdown(a: dict) -> str:
    """The joined answer's part gate (evaluation/join.py): each candidate's holdout top-1, which was kept, and on the
    test split, per part of the photos, their top-1 and the share answered with a class of the other part."""
    names = {ALL: "the all-classes model alone", "all_parts": "stages, gated by the all-classes model's part sums",
             "stages": "stages, gated by their own best probabilities"}
    rows = [[names.get(c, c) + (" (kept)" if c == a["kept"] else ""), _pct(v["zero_shot"]), _pct(v["closed_set"])]
            for c, v in a["candidates"].items()]
    out = [f"Candidates for the answer over every class, top-1 % on the {a['holdout_images']} holdout photos "
           "(the choice is made with zero-shot answers, the default):", "",
           _md_table(["candidate", "with zero-shot", "closed-set"], rows, "lrr")]
    if "zero_shot" in a:
        ways = (("with zero-shot", a["zero_shot"]), ("closed-set", a["heads"][LABEL]))
        part_rows = [[f"{part} photos ({w['parts'][part]['photos']})", *(x for _, v in ways for x in (
            _pct(v["parts"][part]["top1"]), _pct(v["parts"][part]["other_part"])))]
            for part in ("top", "rare") for w in (ways[0][1],)]
        out += ["", "On the test split, by part of the photos:", "",
                _md_table(["photos", *(f"{n}: {k}" for n, _ in ways for k in ("top-1 %", "answered in the other "
                                                                                       "part %"))],
                          part_rows, "lrrrr"),
                "", f"Gate: {a['gate']}, Platt-scaled on the holdout (with zero-shot: scale "
                    f"{a['zero_shot']['gate_scale']:.3f}, bias {a['zero_shot']['gate_bias']:.3f}); models run per "
                    f"photo: {', '.join(a['members'])}; other attributes from {a['attributes_from']}."]
    return "\n".join(out)


def with_answer_numbers(table: pd.DataFrame, summary: dict, answering: dict) -> tuple[pd.DataFrame, dict]:
    """A model's (table, summary) with calibrate.py's numbers: the table gains the joined accuracies (`zs_top{k}`) and
    which classes are zero-shot, the summary an `answering` part ready for metrics.json (no tables, curves or timings:
    a resumed run's metrics equal an uninterrupted one's; config.json keeps the timings)."""
    if not answering: return table, summary
    table, summary = table.copy(), dict(summary)
    zs = answering.get("zero_shot")
    if zs:
        joined = zs["table"]
        for k in _ks_of(summary): table[f"zs_top{k}"] = joined[f"top{k}"].reindex(table.index)
        table["zero_shot"] = table.index.isin(zs["classes"])
    summary["answering"] = {**{k: v for k, v in answering.items() if k not in ("curves", "zero_shot", "closed_table")},
                            "closed_summary": {k: answering.get("closed_summary", summary)[k] for k in ("all", "seen")},
                            **({"zero_shot": {k: v for k, v in zs.items() if k != "table"}} if zs else {})}
    return table, summary


# ----------------------------------------------------------------------------- files

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
    # stage -> other attribute -> (table, summary)
    attributes: dict[str, dict[str, tuple[pd.DataFrame, dict]]] | None = None,
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
        parts += [stage_markdown(f"{name}: {attribute}", t, s)
                  for attribute, (t, s) in attributes.get(name, {}).items()]
    if plots[None]:
        parts.append("## Plots\n\n" + "\n\n".join(_embed(plots[None])))
    atomic_write_text(run_dir / "results.md", "\n\n".join(parts) + "\n")


# ----------------------------------------------------------------------------- a run's report

def headline(summary: dict) -> str:
    "One line of a model's numbers, for the log."
    pct = lambda v: '–' if v is None else f'{100 * v:.2f}%'
    parts = ''.join(f"; {p} part top-1 {pct(s['micro_top1'])}" for p, s in summary.get('parts', {}).items())
    top5 = f", top-5 {pct(summary['all']['micro_top5'])}" if 'micro_top5' in summary['all'] else ''
    return (f"test micro top-1 {pct(summary['all']['micro_top1'])}{top5}; "
            f"seen-class top-1 {pct(summary['seen']['micro_top1'])} (ceiling {pct(summary['ceiling_top1'])}){parts}")


def _body_words(run: Run, m: ModelSpec) -> str:
    body = body_source(m, run.cfg)
    return body if body != 'imagenet' else 'ImageNet' if run.imagenet is not None else 'scratch (no ImageNet weights)'


def train_speed(results: dict) -> dict:
    "Training images per second of each model (every epoch, head-only ones included), where it trained for a while."
    return {s: round(r['train_images'] * (r['epochs'] + r['freeze_epochs']) / r['train_seconds'], 1)
            for s, r in results.items() if r.get('train_seconds')}


def header_markdown(run: Run, timings: dict, speed: dict = None, phases: dict = None) -> str:
    c, w, speed, phases = run.cfg, run.weights, speed or {}, phases or {}
    scratch = '' if w.pretrained else (
        "\n> **Trained from scratch: no ImageNet weights were used** "
        f"({w.note}). Published numbers for this protocol use ImageNet-pretrained ResNet50 on a GPU.\n")
    rules = list(run.record.get('holdout_rows') or c.holdout_by)  # what held photos: `auto` settled on the data
    validated = (f"a holdout of {100 * c.holdout:g}% of the even years (rule{'s' * (len(rules) > 1)} {', '.join(rules)}"
                 f"{' (auto)' * (c.holdout_by == (AUTO,))}"
                 f"{', each drawing from what the one before left' * (len(rules) > 1)})"
                 if c.holdout else
                 'the odd-year test split itself, with a fixed schedule and no model selection '
                 '(as the published runs did)')
    attributes = '' if not c.attributes else (
        f"\n| other attributes | a head each for {', '.join(c.attributes)} beside articleType's, in every model; loss "
        f"weights {', '.join(f'{n} {w:g}' for n, w in zip(('articleType', *c.attributes), c.attribute_weights))}; rows "
        f"without an attribute are left out of its head (counted under Loading) |")
    models = '\n'.join(
        f"| {m.name} | {m.describe(len(run.data.vocabs[m.part]))}"
        f"{f' (ranked over {c.rank_on} rows)' if m.part == TOP else ''}; body from {_body_words(run, m)}, head "
        f"{m.head(c)}, {m.epochs(c)} epochs"
        f"{f' after {c.head_epochs(m.name)} head-only' if c.head_epochs(m.name) else ''} |"
        for m in run.models)
    d = run.record['distributed']
    processes = '' if d['processes'] <= 1 else (
        f"\n| processes | {d['processes']} ({d['backend']}), {d['bs_per_process']} images each per step; epoch lines "
        f"show the main process's share of the validation images, the evaluation below all of them |")
    training = (', channels_last' if c.channels_last else '') + (
        f", label smoothing {c.label_smoothing}" if c.label_smoothing else '')
    tta = '' if not c.tta else '; test-time augmentation: ' + (
        'each image averaged with its mirror image' if c.tta == FLIP else f'fastai tta, {c.tta} passes')
    times = ', '.join(f"{m.name} {timings.get(m.name, 0) / 60:.1f} min"
                      + (f" ({speed[m.name]:.0f} training images/s)" if m.name in speed else '') for m in run.models)
    since = ' (since the last --resume; model times include the epochs before it)' if timings.get('resumed') else ''
    by_phase = '; '.join(f"{m}: " + ', '.join(f"{k.replace('_', ' ')} {v / 60:.1f}" for k, v in p.items())
                         for m, p in phases.items()) or '-'
    return f"""# fashion_fastai results

Command: `{run.record['command']}`
{scratch}
| | |
|---|---|
| data | `{run.record['data_dir']}` |
| arch | {c.arch} at {c.size[0]}x{c.size[1]} (height x width), batch size {c.bs}, {c.precision}{training} |
| resolved on this machine | {'; '.join(f"{k}: {v}" for k, v in run.record['resolved']['why'].items())} |
| starting weights | {'ImageNet: ' + w.source if w.pretrained else 'scratch'} ({w.note}) |
{models}{attributes}
| validation during training | {validated} |{processes}
| evaluation | odd-year test split, every image with a known class, fixed order{tta} |
| time | {times}, total {timings['total'] / 60:.1f} min{since} |
| time by phase, minutes | {by_phase} |
| versions | {', '.join(f'{k} {v}' for k, v in run.record['versions'].items())} |

Loading: {run.data.report.summary()}. Skipped ids are listed in `load_report.json`.

"Seen" classes have at least one training image. A class with test images but no training image can be right only by
chance (nothing taught the model it), so the ceiling, the share of test images whose class is seen, is what a model
reaches that is right on every seen image and makes no lucky guess.
"""


def write_results(run: Run, results: dict, joined: dict = None) -> None:
    """Plots, the final config.json (learning rates used, timings), results.md and metrics.json, and a summary on
    stdout; `joined`: the answer for any photo (`run.join_models`), a section of its own when the run kept one."""
    timings = {s: r['train_seconds'] for s, r in results.items()}
    timings['total'], timings['resumed'] = round(time.time() - run.started, 1), any(run.resumed.values())
    r1, k = results[FIRST], run.cfg.topk
    plot_confusion(r1['probs'], r1['targs'], r1['vocab'], run.dir / f'confusion_top{k}.png',
                   f"{FIRST}: top-{k} confusion on the test split")
    last = list(results)[-1]  # the other attributes' heads train on through the models: the last has seen the most
    for a, h in results[last]['attributes'].items():
        plot_confusion(h['probs'], h['targs'], h['vocab'], run.dir / f'confusion_{a}_{last}.png',
                       f"{last}: {a} confusion on the test split")
    # the all-classes model is left out: its classes are the stages': its table is in results.md
    plot_per_class({s: r['table'] for s, r in results.items() if spec(s).part != ALL},
                   run.dir / 'per_class_accuracy.png')
    plot_top_losses({s: {k: r[k] for k in ('files', 'probs', 'targs', 'vocab')} for s, r in results.items()},
                    run.dir / 'top_losses.png')
    for name, r in results.items():
        if r.get('answering', {}).get('curves'):
            plot_reliability(r['answering']['curves'], run.dir / f'reliability_{name}.png',
                             f"{name}: reliability on the test split")
    kept = joined is not None and "closed_table" in joined
    if kept: plot_reliability(joined["curves"], run.dir / f"reliability_{JOINED}.png",
                              f"{JOINED}: reliability on the test split")
    speed = train_speed(results)
    run.record.update(lr_used={s: r['lr'] for s, r in results.items()}, timings_seconds=timings,
                      phase_seconds={s: r['phase_seconds'] for s, r in results.items()},
                      train_images_per_second=speed)
    if joined is not None: run.record['phase_seconds'][JOINED] = dict(join=joined['seconds'])
    atomic_write_text(run.dir / 'config.json', json.dumps(run.record, indent=1))
    load_counts = {k: v if not isinstance(v, list) else len(v) for k, v in run.data.report.to_dict().items()}
    stages = {s: with_answer_numbers(r['table'], r['summary'], r.get('answering')) for s, r in results.items()}
    if kept:
        stages[JOINED] = with_answer_numbers(joined['closed_table'], joined['closed_summary'],
                                             {k: v for k, v in joined.items() if k != 'seconds'})
    write_report(run.dir, stages,
                 header_markdown(run, timings, speed, run.record['phase_seconds']),
                 extra=dict(config=run.record, load_report=load_counts,
                            **({JOINED: {k: joined[k] for k in ('candidates', 'kept', 'why_not', 'holdout_parts')
                                         if k in joined}} if joined is not None else {})),
                 attributes={s: {a: (h['table'], h['summary']) for a, h in r['attributes'].items()}
                             for s, r in results.items() if r['attributes']})
    print(f"\nDone in {timings['total'] / 60:.1f} min. Run folder: {run.dir}", flush=True)
    for s, r in results.items():
        print(f"  {s}: {headline(r['summary'])}")
        for a, h in r['attributes'].items(): print(f"  {s} {a}: {headline(h['summary'])}")
    if kept: print(f"  {JOINED}: {headline(joined['zero_shot']['summary'])} (closed-set "
                   f"{headline(joined['closed_summary'])})")
    print(f"  report: {run.dir / 'results.md'}\nNext: python -m fashion_fastai.predict {run.dir} IMAGE_OR_FOLDER",
          flush=True)
