"""Benchmark: which holdout ranks settings as the odd-year test split does.

Takes finished `train` runs that held out photos by several rules at once (`--holdout-by years,products,random`, each
photo recording the rule that held it: fashion_fastai/data/holdout.py), rebuilds that holdout from each run's
config.json, and scores each exported stage on each rule's photos apart, next to the run's own test-split numbers
(metrics.json, written by the run itself).  A pair of runs that differ by one setting then shows, per rule, whether its
photos order the two settings as the test split does, and by how much.

Evaluation-only settings are scored from the same models: `--tta flip`, and other input sizes (`--sizes 160x120`: the
train/test resolution discrepancy, a model trained at one size and evaluated at a larger one); those test-split numbers
are measured here too, with `--test` (off by default: the test split judges final settings, so scoring it is a choice
made once per setting, not a default).

    .venv/bin/python bench/holdout_agreement.py runs/agr-80-f0 runs/agr-80-f1 --flip
    .venv/bin/python bench/holdout_agreement.py runs/agr-128-f0 --sizes 160x120

Writes bench/results/holdout-agreement-<run name>.json per run and prints a markdown table.
"""
from __future__ import annotations

import json, math, sys, time
from pathlib import Path

import numpy as np

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
from fastcore.script import call_parse

from fashion_fastai.networks.attributes import article_vocab
from fashion_fastai.answering.temperature import ece, fit_temperature, temper
from fashion_fastai.core.compat import PadResize
from fashion_fastai.training.config import TrainConfig, FLIP, parse_size
from fashion_fastai.data.styles import load_data, as_items, eval_rows
from fashion_fastai.data.holdout import RULES, product_stems
from fashion_fastai.evaluation.tta import predict_with_tta
# each stage's learner; top-1, top-5 and seen-class top-1 as bench/tta.py scores them
from tta import PARTS, exported_stages, scores

ALL_HELD = 'all held'  # every rule's photos together: the largest holdout a run has, so the narrowest band


def at_size(dl, size):
    "`dl` with its images resized to `size` (height, width) instead of the model's training size; None: as it is."
    if size is None: return dl
    dl.after_item.fs = [PadResize(size) if isinstance(f, PadResize) else f for f in dl.after_item.fs]
    return dl


def product_in_training(frame) -> dict:
    """Per rule, and for the test split: the share of photos whose product (holdout.product_stems: the name without
    colour words) has a photo in training, what a model can recognise rather than generalise to."""
    stems = product_stems(frame)
    trained = set(stems[frame['split'] == 'train'])
    sets = {**{r: frame['held_by'] == r for r in RULES}, 'test': frame['split'] == 'test'}
    return {k: round(float(stems[m].isin(trained).mean()), 4) for k, m in sets.items() if m.any()}


def article_probs(probs, targs):
    "(probabilities, targets) of the article type's head as numpy (with --attributes it is the last of the heads)."
    if isinstance(probs, (tuple, list)): probs, targs = probs[-1], targs[-1]
    return probs.numpy().astype(np.float64), targs.numpy()


def predict(learn, rows, attributes, tta=0, size=None):
    "`predict_with_tta` on `rows` (at `size`, or the model's own)."
    dl = at_size(learn.dls.test_dl(as_items(rows, attributes), with_labels=True, shuffle=False), size)
    with learn.no_bar(): return predict_with_tta(learn, dl, tta)


def calibration_transfer(held: dict, test: tuple) -> dict:
    """A temperature fitted on each rule's photos (and on all of them, as the run fits it), and the expected calibration
    error it leaves on the test split: which holdout's photos calibrate for the test years.  `held`: {rule: (probs,
    targets)} of the plain pass; `test`: the test split's."""
    test_p, test_y = test
    held = dict(held, **{ALL_HELD: tuple(np.concatenate(x) for x in zip(*held.values()))})
    out = {'softmax': dict(temperature=1., test_ece=ece(test_p, test_y))}
    for k, (p, y) in held.items():
        t = fit_temperature(p, y)
        out[k] = dict(temperature=t, test_ece=ece(temper(test_p, t), test_y), holdout_ece_before=ece(p, y))
    return out


def score_run(run: Path, flip: bool, sizes: list, test: bool, calibration: bool = False) -> dict:
    cfg = TrainConfig.of_run(run)
    record = json.loads((run / 'config.json').read_text())
    if not cfg.holdout:
        raise SystemExit(f"holdout_agreement: error: {run} validated on the test split (no --holdout): nothing to "
                         "compare.")
    data = load_data(record['data_dir'], **cfg.data_options())
    metrics = json.loads((run / 'metrics.json').read_text())
    ways = {'plain': (0, None), **({'flip': (FLIP, None)} if flip else {}),
            **{f'size {h}x{w}': (0, (h, w)) for h, w in sizes}}
    out = dict(command=' '.join(['python', *sys.argv]), run=str(run), options=record.get('command'),
               holdout_rows=record.get('holdout_rows'), product_in_training=product_in_training(data.frame), stages={})
    for stage, part, learn in exported_stages(run):
        vocab, counts = article_vocab(learn.dls), data.train_counts(part)
        held = eval_rows(data, part, 'valid')
        sets = {rule: held[held['held_by'] == rule] for rule in RULES if (held['held_by'] == rule).any()}
        if test: sets['test'] = eval_rows(data, part, 'test')
        r = out['stages'][stage] = dict(images={k: len(v) for k, v in sets.items()},
                                        run_test=metrics['stages'][stage]['all']['micro_top1'])
        plain = {}  # the plain pass on each rule's photos, which calibration reuses
        for name, (tta, size) in ways.items():
            for k, rows in sets.items():
                if k == 'test' and name == 'plain': continue  # the run's own evaluation is that number
                t0 = time.time()
                preds = predict(learn, rows, cfg.attributes, tta, size)
                r.setdefault(name, {})[k] = dict(scores(*preds, vocab, counts), seconds=round(time.time() - t0, 1))
                if name == 'plain': plain[k] = article_probs(*preds)
        if calibration:
            r['calibration'] = calibration_transfer(
                plain, article_probs(*predict(learn, eval_rows(data, part, 'test'), cfg.attributes)))
        print(f"{run.name} {stage}: {json.dumps(r)}", flush=True)
    return out


def merged(path: Path, new: dict) -> dict:
    """`new` written to `path` over what an earlier scoring of the same run wrote there (its other ways and splits kept,
    with the command that measured them), so that measurements made one at a time add up."""
    if path.is_file():
        old = json.loads(path.read_text())
        for stage, s in new['stages'].items():
            for way, v in s.items():
                if isinstance(v, dict): old['stages'].setdefault(stage, {}).setdefault(way, {}).update(v)
                else: old['stages'].setdefault(stage, {})[way] = v
        new = dict(new, stages=old['stages'], commands=[*old.get('commands', [old['command']]), new['command']])
    path.write_text(json.dumps(new, indent=1))
    return new


def held_images(images: dict, where: str) -> int:
    "Photos of a rule, of the test split, or of every rule together (ALL_HELD)."
    return sum(images.get(r, 0) for r in RULES) if where == ALL_HELD else images.get(where, 0)


def pooled_top1(s: dict, way: str):
    """A stage's top-1 on every rule's photos together: each rule's weighted by its photos, which pools micro top-1
    exactly; None where a rule's was not measured that way."""
    rules, measured = [r for r in RULES if s['images'].get(r)], s.get(way, {})
    if not rules or any(r not in measured for r in rules): return None
    return sum(measured[r]['top1'] * s['images'][r] for r in rules) / held_images(s['images'], ALL_HELD)


def top1(scored: dict, run: str, stage: str, way: str, where: str):
    "A run's top-1 on a rule's photos, on all of them (ALL_HELD) or on the test split; None where it was not measured."
    s = scored[run]['stages'].get(stage)
    if s is None: return None
    if where == 'test' and way == 'plain': return s['run_test']
    if where == ALL_HELD: return pooled_top1(s, way)
    return s.get(way, {}).get(where, {}).get('top1')


def noise(p: float, n: int) -> float:
    """Two standard errors, in points, of the difference between two models' accuracies near `p` on `n` photos, as if
    their errors were independent: what one setting against another can show on that many photos."""
    return 200 * math.sqrt(2 * p * (1 - p) / n) if n else math.inf


def agreement(scored: dict, pairs: str) -> list[str]:
    """Markdown rows, one per pair and stage: the second setting minus the first on each rule's photos and on the test
    split, in points, and whether the rule orders the two as the test split does: 'yes' or 'no' where both differences
    pass their `noise`, '≈' where the rule's is within it, 'test ≈' where the test split's is.  `pairs`:
    'label[@STAGE]=RUN[/WAY]:RUN[/WAY]' separated by ';' (WAY: plain, flip, 'size HxW'; plain by default; STAGE: that
    stage alone)."""
    rows = []
    for pair in (p for p in pairs.split(';') if p.strip()):
        label, sides = pair.split('=', 1)
        label, _, only = label.partition('@')  # 'label@stage1': that stage alone
        (ra, _, wa), (rb, _, wb) = (side.strip().partition('/') for side in sides.split(':'))
        for stage in PARTS:
            if (stage not in scored[ra]['stages'] or stage not in scored[rb]['stages']
                    or only.strip() not in ('', stage)):
                continue
            images = scored[ra]['stages'][stage]['images']
            cells = {}
            for where in (*RULES, ALL_HELD, 'test'):
                a, b = top1(scored, ra, stage, wa or 'plain', where), top1(scored, rb, stage, wb or 'plain', where)
                if a is not None and b is not None: cells[where] = (100 * (b - a), noise(a, held_images(images, where)))
            test, test_noise = cells.get('test', (None, None))
            def verdict(d, band):
                if abs(d) < band: return '≈'
                if test is None: return 'test not measured'
                if abs(test) < test_noise: return 'test ≈'
                return 'yes' if (d > 0) == (test > 0) else 'no'
            rows.append(f"| {label.strip()} | {stage} | " + ' | '.join(
                f"{cells[k][0]:+.2f} ({verdict(*cells[k])})" if k in cells else '-' for k in (*RULES, ALL_HELD))
                + (" | not measured |" if test is None else f" | {test:+.2f}{' (≈)' if abs(test) < test_noise else ''} "
                   "|"))
    return rows


WAYS_LEFT_OUT = ('images', 'run_test', 'calibration')  # a stage's keys that are no way of scoring


def score_rows(scored: list) -> list[str]:
    "Markdown rows: per run, stage and way, top-1 on each rule's photos and on the test split."
    rows = ["| run | stage | way | " + ' | '.join(f'{k} top-1' for k in (*RULES, ALL_HELD)) + " | test top-1 |",
            "|---|---|---|" + "---:|" * (len(RULES) + 2)]
    for r in scored:
        for stage, s in r['stages'].items():
            for way in (w for w in s if w not in WAYS_LEFT_OUT):
                test_top1 = s['run_test'] if way == 'plain' else s[way].get('test', {}).get('top1')
                pooled = pooled_top1(s, way)
                rows.append(f"| {Path(r['run']).name} | {stage} | {way} | "
                            + ' | '.join(f"{100 * s[way][k]['top1']:.2f}%" if k in s[way] else '-' for k in RULES)
                            + f" | {'-' if pooled is None else f'{100 * pooled:.2f}%'}"
                            + f" | {'-' if test_top1 is None else f'{100 * test_top1:.2f}%'} |")
    return rows


def calibration_rows(scored: list) -> list[str]:
    "Markdown rows: per run and stage, the test split's ECE after a temperature fitted on each rule's photos."
    kinds = ('softmax', *RULES, ALL_HELD)
    rows = ["| run | stage | "
            + ' | '.join(f'{k}: T / test ECE' if k != 'softmax' else 'softmax: test ECE' for k in kinds)
            + " |", "|---|---|" + "---:|" * len(kinds)]
    for r in scored:
        for stage, s in r['stages'].items():
            c = s.get('calibration')
            if c: rows.append(f"| {Path(r['run']).name} | {stage} | " + ' | '.join(
                '-' if k not in c else f"{100 * c[k]['test_ece']:.2f}%" if k == 'softmax' else
                f"{c[k]['temperature']:.3f} / {100 * c[k]['test_ece']:.2f}%" for k in kinds) + " |")
    return rows


@call_parse
def main(runs: Path = None,        # `train` run folders trained with --holdout-by naming several rules
         *more: Path,
         flip: bool = False,       # also score each image averaged with its mirror image (--tta flip)
         sizes: str = '',          # also score at these input sizes, comma-separated HxW (e.g. 160x120)
         test: bool = False,       # also score the evaluation-only settings on the test split
         # also fit a temperature on each rule's photos and give the test split's ECE after it
         calibration: bool = False,
         # print the tables and the agreement of pairs of scored runs (see `agreement`), from `out`
         pairs: str = '', out: Path = Path(__file__).parent / 'results'):
    sizes = [parse_size(s) for s in sizes.split(',') if s.strip()]
    out.mkdir(parents=True, exist_ok=True)
    scored = [merged(out / f'holdout-agreement-{Path(run).name}.json',
                     score_run(Path(run), flip, sizes, test, calibration))
              for run in (r for r in (runs, *more) if r is not None)]
    if pairs:
        names = {n for p in pairs.split(';') if '=' in p for side in p.split('=', 1)[1].split(':')
                 for n in [side.strip().partition('/')[0]]}
        by_name = {n: json.loads((out / f'holdout-agreement-{n}.json').read_text()) for n in sorted(names)}
        for r in by_name.values():  # the test split's photos per stage, from the run's own report
            tested = json.loads((Path(r['run']) / 'metrics.json').read_text())['stages']
            for stage, st in r['stages'].items(): st['images']['test'] = tested[stage]['n_test']
        scored = list(by_name.values())
        print("\n| pair (second minus first, points) | stage | " + ' | '.join(f'{k} (orders as the test split?)'
                                                                        for k in (*RULES, ALL_HELD))
              + " | test split |\n|---|---|" + "---:|" * (len(RULES) + 2))
        print('\n'.join(agreement(by_name, pairs)))
    print('\n' + '\n'.join(score_rows(scored)))
    if any('calibration' in s for r in scored
           for s in r['stages'].values()): print('\n' + '\n'.join(calibration_rows(scored)))
