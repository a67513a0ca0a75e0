"""`python -m fashion_fastai.audit RUN [--data DIR] --out audit/`: the labels of a Kaggle-layout data folder that are
probably wrong, for a person to go through.

Two independent signals, each written to a CSV and shown on one HTML page with thumbnails (audit_page.py):

* **Near-duplicate photos whose labels disagree.** The same product photographed twice should carry the same labels.
  A pair is a near-duplicate when both the run's embedding (the input of its article-type layer, as `index` uses) and
  the photos' perceptual hashes (imagehash's DCT `phash`) say so: the embedding alone pairs any two plain black
  t-shirts, the hash alone any two photos of a similar silhouette on white.  The hash is of the grey image, so two
  colours of one model photographed alike differ by a few bits only: by default the hashes must be equal (chosen on
  the even years: BENCHMARKS.md); so must their colour hashes, which tell two shades of one lipstick apart.  Pairs join
  into groups (connected components); a group is reported for each attribute on which its labels differ.
* **Labels the model confidently contradicts**, found by cleanlab's confident learning (`find_label_issues`) from the
  model's probabilities, ranked by the given label's probability.  These are the trained heads' softmax, deliberately
  not what `predict` answers (no temperature, no zero-shot class): the closed-set model judges the labels of the
  classes it trained on.  Confident learning needs *out-of-sample* probabilities: a model scores the photos it trained
  on as it was taught, wrong labels included.  So only photos the
  run's model never trained on are judged (with the run's own data folder: its test split and its holdout); the
  others are counted as not judged, as are photos whose label is a class the model never saw in training (it cannot
  answer them: that is no evidence against the label).

Which rows the model trained on comes from the run's config.json (its data folder and protocol settings), the way the
run itself chose them.
"""
from __future__ import annotations

import json, warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastcore.script import call_parse

from fashion_fastai.core.atomic import atomic_write_text
from fashion_fastai.catalogue.audit_page import write_page
from fashion_fastai.cli import command
from fashion_fastai.training.config import TrainConfig
from fashion_fastai.core.schema import ATTRIBUTES, LABEL
from fashion_fastai.data.pixels import open_rgb
from fashion_fastai.data.styles import (LoadReport, assign_protocol, attach_images, data_folder_problem, is_missing,
                                        load_styles)
from fashion_fastai.core.errors import DataError, OptionError
from fashion_fastai.catalogue.index import Index, weights_only
from fashion_fastai.inference.options import DEFAULT, Batch, Device, Stage, WeightsModel, check_model_options
from fashion_fastai.inference.predictors import WeightsOnlyModel
from fashion_fastai.core.models import ALL, NAMES, heads_seen_part, spec

# The columns audited unless --attributes says otherwise: those a person can check by looking at the photo.  Season and
# usage are merchandising choices (the same shirt is sold for summer one year and spring the next), so neither the
# model nor a reviewer can contradict them from pixels.
VISIBLE = (LABEL, 'gender', 'masterCategory', 'subCategory', 'baseColour')
NEIGHBOURS = 10  # candidate near-duplicates looked at per photo: a product is rarely re-shot more often
QUERY_BLOCK = 1024  # photos whose neighbours are searched at once: memory stays flat in the folder's size


def catalogue_extras():
    "cleanlab's `find_label_issues` and imagehash, or an error saying how to install them (the `catalogue` extra)."
    try:
        import cleanlab.filter, imagehash
        return cleanlab.filter.find_label_issues, imagehash
    except ImportError as e:
        raise OptionError(f"audit needs cleanlab and imagehash ({e}): pip install 'fashion_fastai[catalogue]'.") from e


@dataclass
class TrainingSet:
    "What the model learnt from: the photo files it trained on and, per head, its training photos per class."
    files: set = field(default_factory=set)
    classes: dict = field(default_factory=dict)  # {head: {value: photos}}; a head absent: unknown, its vocab counts
    known: bool = False
    note: str = ''


def training_set(model_json: Path, heads: list, data_dir: Path = None, rows: pd.DataFrame = None) -> TrainingSet:
    """The training photos of the run that `model_json` belongs to, rebuilt from its config.json as the run built them
    (same data folder, top-k, holdout and seed).  `rows`: the usable rows of `data_dir` already read, used when the run
    trained on that folder, so that its images are not checked twice."""
    run_dir = Path(model_json).parent
    name = Path(model_json).stem
    if not (run_dir / 'config.json').is_file() or name not in NAMES:
        return TrainingSet(note=f"{model_json} has no run's config.json beside it: which photos it trained on is "
                                f"unknown, so every photo is judged as out-of-sample and every class of its vocab as "
                                f"trained")
    cfg, record = TrainConfig.of_run(run_dir), json.loads((run_dir / 'config.json').read_text())
    trained_on = Path(record['data_dir'])
    if data_folder_problem(trained_on, '--data', demo_hint=False):
        raise DataError(f"{run_dir}/config.json says the run trained on {trained_on}, which is no longer a data "
                        f"folder: the audit must know which photos the model trained on; restore that folder.")
    if rows is None or Path(data_dir).resolve() != Path(trained_on).resolve():
        styles, report = load_styles(trained_on / 'styles.csv')
        rows = attach_images(styles, trained_on / 'images', report)
    rows = assign_protocol(rows.copy(), record['top_classes'], cfg.holdout, cfg.seed, cfg.holdout_by)
    train = rows[rows['split'] == 'train']
    m = spec(name)
    seen = {LABEL: train[(train['part'] == m.part) | (m.part == ALL)]}
    part = heads_seen_part(m, cfg)
    seen |= {h: train[(train['part'] == part) | (part == ALL)] for h in heads if h != LABEL}
    classes = {h: r[h].dropna().map(str.strip).value_counts().drop('', errors='ignore').to_dict()
               for h, r in seen.items() if h in r}
    years = "its run's even years" + (' less its holdout' if cfg.holdout else '')
    return TrainingSet(set(train['file']), classes, True,
                       f"the model trained on {len(train)} photos of {trained_on} ({years})")


def audited_rows(data_dir: Path, attributes: list = None) -> tuple[pd.DataFrame, LoadReport, list]:
    """The folder's usable rows (files checked, skips counted), the load report, and the label columns to audit
    (default: the `VISIBLE` ones the folder has)."""
    if problem := data_folder_problem(data_dir, '--data', demo_hint=False): raise DataError(problem)
    styles, report = load_styles(data_dir / 'styles.csv')
    there = [c for c in (LABEL, *ATTRIBUTES) if c in styles.columns]
    default = [c for c in VISIBLE if c in styles.columns]
    absent = [a for a in attributes or () if a not in styles.columns]
    if absent:
        raise DataError(f"{data_dir / 'styles.csv'} has no column {', '.join(absent)} to audit; it has "
                        f"{', '.join(there)}: leave it out of --attributes.")
    attributes = list(attributes or default)
    rows = attach_images(styles, data_dir / 'images', report)
    if rows.empty: raise DataError(f"no usable photo in {data_dir}: {report.summary()}")
    for a in attributes: rows[a] = rows[a].map(lambda v: v.strip() if isinstance(v, str) else v)
    return rows, report, attributes


def label_issues(rows: pd.DataFrame, attributes: list, probs: dict, vocabs: dict, judged: np.ndarray,
                 trained: TrainingSet, find_label_issues, min_train: int = 10) -> tuple[pd.DataFrame, dict]:
    """Per column of `attributes` that the model has a head for: the rows whose label confident learning calls wrong,
    worst first, and the counts of what was judged and why the rest was not.  A label of a class with fewer than
    `min_train` training photos is not judged: the model hardly answers such a class (Personal Care has one even-year
    photo), so its low probability says nothing against the label."""
    out, counts = [], {}
    for head, p in probs.items():
        if head not in attributes: continue
        vocab, given = vocabs[head], rows[head]
        seen = trained.classes.get(head) if trained.known else None
        learnt = set(vocab) if seen is None else {c for c, n in seen.items() if n >= min_train}
        index = {c: i for i, c in enumerate(vocab)}
        missing = given.map(is_missing).to_numpy()
        unseen = ~missing & ~given.map(lambda v: v in learnt and v in index).to_numpy()
        use = judged & ~missing & ~unseen
        c = dict(judged=int(use.sum()), not_judged_trained_on=int((~judged).sum()),
                 not_judged_missing_label=int((judged & missing).sum()),
                 not_judged_class_too_rare=int((judged & unseen).sum()))
        labels = np.array([index[v] for v in given[use]], np.int64)
        if len(set(labels)) < 2:  # confident learning compares classes: one class alone gives it nothing to weigh
            counts[head] = c | dict(judged=0, flagged=0, not_judged_one_class=c['judged']); continue
        pp = p.numpy()[use].astype(np.float64)
        pp /= pp.sum(1, keepdims=True)
        with warnings.catch_warnings():  # "too few examples in class k": the counts above say how many were judged
            warnings.filterwarnings('ignore', message='May not flag all label issues', category=UserWarning)
            ranked = find_label_issues(labels, pp, return_indices_ranked_by='self_confidence', n_jobs=1)
        where = np.flatnonzero(use)[ranked]
        best = pp[ranked].argmax(1)
        out.append(pd.DataFrame(dict(
            attribute=head, rank=np.arange(1, len(ranked) + 1), id=rows['id'].to_numpy()[where],
            file=rows['file'].to_numpy()[where], given=given.to_numpy()[where],
            prob_given=pp[ranked, labels[ranked]].round(4), suggested=[vocab[i] for i in best],
            prob_suggested=pp[ranked, best].round(4))))
        counts[head] = c | dict(flagged=len(ranked))
    columns = ['attribute', 'rank', 'id', 'file', 'given', 'prob_given', 'suggested', 'prob_suggested']
    return (pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=columns)), counts


def candidate_pairs(vectors: np.ndarray, min_cosine: float) -> np.ndarray:
    "[P, 2] pairs of rows (i < j) whose embeddings are among each other's nearest and at least `min_cosine` alike."
    index = Index(vectors, [str(i) for i in range(len(vectors))], [], [], [], {})
    pairs = []
    for start in range(0, len(vectors), QUERY_BLOCK):
        scores, near = index.search(vectors[start:start + QUERY_BLOCK], NEIGHBOURS + 1)
        rows = np.repeat(np.arange(start, start + len(near)), near.shape[1])
        keep = (scores.ravel() >= min_cosine) & (rows != near.ravel())
        pairs.append(np.sort(np.stack([rows[keep], near.ravel()[keep]], 1), axis=1))
    return np.unique(np.concatenate(pairs), axis=0) if pairs else np.zeros((0, 2), np.int64)


def duplicate_groups(files: list, vectors: np.ndarray, min_cosine: float, max_bits: int, imagehash,
                     max_colour_bits: int = 0) -> np.ndarray:
    """Per row, its group of near-duplicate photos (-1: none): pairs alike by embedding, by perceptual hash (the grey
    image's structure) and by colour hash (imagehash's `colorhash`: hue and saturation histogram), joined into
    connected components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    pairs = candidate_pairs(vectors, min_cosine)
    hashes = {i: (imagehash.phash(im), imagehash.colorhash(im)) for i in np.unique(pairs)
              for im in [open_rgb(files[i])]}
    alike = lambda a, b: hashes[a][0] - hashes[b][0] <= max_bits and hashes[a][1] - hashes[b][1] <= max_colour_bits
    pairs = np.array([p for p in pairs if alike(*p)], np.int64).reshape(-1, 2)
    n = len(files)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    return np.where(sizes[component] > 1, component, -1)


def disagreements(rows: pd.DataFrame, groups: np.ndarray, attributes: list) -> tuple[pd.DataFrame, dict]:
    "One row per photo of each group whose labels differ on an attribute (missing labels do not count as a value)."
    grouped = rows.assign(group=groups)[groups >= 0]
    out, counts = [], {}
    for a in attributes if len(grouped) else ():
        values = grouped[~grouped[a].map(is_missing)]
        differ = values.groupby('group')[a].nunique()
        bad = grouped[grouped['group'].isin(differ[differ > 1].index)]
        counts[a] = dict(groups=int((differ > 1).sum()), photos=len(bad))
        out.append(bad.assign(attribute=a, value=bad[a])[['attribute', 'group', 'id', 'file', 'value']])
    counts = {a: counts.get(a, dict(groups=0, photos=0)) for a in attributes}
    df = (pd.concat(out, ignore_index=True) if out
          else pd.DataFrame(columns=['attribute', 'group', 'id', 'file', 'value']))
    return df.sort_values(['attribute', 'group', 'value', 'id'], kind='stable').reset_index(drop=True), counts


def check_out(out: Path) -> Path:
    "The output folder, made and proved writable before the first photo is read."
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / '.write-test').write_text('ok'); (out / '.write-test').unlink()
    except OSError as e:
        raise OptionError(f"--out {out}: cannot write there ({e.strerror or e}); give a folder you can write.") from e
    return out


def audit(model: Path, data: Path = None, out: Path = Path('audit'), stage: str = None, attributes: list = None,
          min_cosine: float = 0.95, max_bits: int = 0, max_colour_bits: int = 0, min_train: int = 10, bs: int = 64,
          device: str = 'auto', page_items: int = 100, log=print) -> dict:
    "Run the audit, write its CSVs, page and summary.json into `out`; returns the summary."
    find_label_issues, imagehash = catalogue_extras()
    model_json = weights_only(Path(model), stage)
    record = Path(model_json).parent / 'config.json'
    if data is None:
        if not record.is_file():
            raise OptionError(f"{model}: no run's config.json to take the data folder from: pass --data DIR.")
        try: data = Path(json.loads(record.read_text())['data_dir'])
        except (ValueError, KeyError, TypeError) as e:  # not JSON, or not a run's record
            raise DataError(f"{record} is damaged or not a run's config.json ({type(e).__name__}): pass --data "
                            f"DIR.") from e
    out = check_out(Path(out))
    rows, load_report, attributes = audited_rows(Path(data), attributes)
    log(f"audit: {load_report.summary()}")
    predictor = WeightsOnlyModel(model_json, device)
    trained = training_set(model_json, list(predictor.vocabs), Path(data), rows)
    log(f"audit: {len(rows)} photos of {data}; {trained.note}")
    vectors, probs = [], {h: [] for h in predictor.vocabs}
    for i in range(0, len(rows), 4096):
        emb, p = predictor.embed(list(rows['file'][i:i + 4096]), bs)
        vectors.append(emb.numpy())
        for h in p: probs[h].append(p[h])
        log(f"audit: {min(i + 4096, len(rows))} of {len(rows)} photos through {model_json.name}")
    probs = {h: torch.cat(p) for h, p in probs.items()}
    judged = ~rows['file'].isin(trained.files).to_numpy()
    issues, issue_counts = label_issues(rows, attributes, probs, predictor.vocabs, judged, trained, find_label_issues,
                                        min_train)
    groups = duplicate_groups(list(rows['file']), np.concatenate(vectors), min_cosine, max_bits, imagehash,
                              max_colour_bits)
    dups, dup_counts = disagreements(rows, groups, attributes)
    summary = dict(data=str(data), model=str(model_json), photos=len(rows), load_report=load_report.to_dict(),
                   training_set=trained.note, attributes=attributes, min_train=min_train,
                   near_duplicates=dict(min_cosine=min_cosine, max_hash_bits=max_bits,
                                        max_colour_hash_bits=max_colour_bits,
                                        groups=int(len(set(groups[groups >= 0]))),
                                        photos_in_groups=int((groups >= 0).sum()), disagreeing=dup_counts),
                   label_issues=issue_counts)
    atomic_write_text(out / 'label_issues.csv', issues.to_csv(index=False))
    atomic_write_text(out / 'duplicate_groups.csv', dups.to_csv(index=False))
    atomic_write_text(out / 'summary.json', json.dumps(summary, indent=1))
    write_page(out / 'audit.html', issues, dups, summary, page_items)
    return summary


def summary_lines(summary: dict) -> list:
    "The counts a person reads first, one line per attribute."
    d, lines = summary['near_duplicates'], []
    lines.append(f"{d['groups']} groups of near-duplicate photos ({d['photos_in_groups']} photos)")
    for a in summary['attributes']:
        c, i = d['disagreeing'].get(a, {}), summary['label_issues'].get(a)
        lines.append(f"{a}: {c.get('groups', 0)} near-duplicate groups disagree"
                     + (f"; {i['flagged']} of {i['judged']} judged labels flagged ({i['not_judged_trained_on']} "
                        f"trained on, {i['not_judged_class_too_rare']} of classes with too few training photos, "
                        f"{i['not_judged_missing_label']} without a label: not judged)" if i else
                        "; no head of the model predicts it: labels not judged"))
    return lines


@call_parse
@command('audit')
def main(model: WeightsModel,
         data: str = None,           # Kaggle-layout folder (styles.csv + images/) to audit (default: the run's own)
         out: str = 'audit',         # folder for label_issues.csv, duplicate_groups.csv, audit.html, summary.json
         stage: Stage = DEFAULT.stage,
         attributes: str = None,     # styles.csv columns to audit, comma-separated (default: every label column there)
         min_cosine: float = 0.95,   # near-duplicates: least cosine of the two photos' embeddings
         max_bits: int = 0,          # near-duplicates: most differing bits of the two photos' 64-bit perceptual hashes
         max_colour_bits: int = 0,   # near-duplicates: most differing bits of their 42-bit colour hashes
         min_train: int = 10,        # judge only labels of classes with at least this many training photos
         bs: Batch = DEFAULT.bs,
         device: Device = DEFAULT.device,
         # most label issues and duplicate groups per attribute on the page (the CSVs hold all)
         page_items: int = 100,
         ):
    "Find probably wrong labels in a data folder: disagreeing near-duplicates and labels the model contradicts."
    check_model_options(stage=stage, device=device, bs=bs)
    if not -1 <= min_cosine <= 1:
        raise OptionError(f"--min-cosine must be a cosine in [-1, 1], e.g. 0.95; got {min_cosine}.")
    if not 0 <= max_bits <= 64: raise OptionError(f"--max-bits must be from 0 to 64, got {max_bits}.")
    if not 0 <= max_colour_bits <= 42:
        raise OptionError(f"--max-colour-bits must be from 0 to 42, got {max_colour_bits}.")
    if min_train < 1: raise OptionError(f"--min-train must be at least 1, got {min_train}.")
    if page_items < 1: raise OptionError(f"--page-items must be at least 1, got {page_items}.")
    names = [a.strip() for a in attributes.split(',') if a.strip()] if attributes else None
    if names and (bad := [a for a in names if a not in (LABEL, *ATTRIBUTES)]):
        raise OptionError(f"--attributes: {', '.join(bad)} is not a label column; choose among {LABEL}, "
                          f"{', '.join(ATTRIBUTES)}.")
    summary = audit(Path(model), Path(data) if data else None, Path(out), stage, names, min_cosine, max_bits,
                    max_colour_bits, min_train, bs, device, page_items)
    for line in summary_lines(summary): print(line)
    print(f"audit: {Path(out) / 'audit.html'} to go through; "
          f"all of it in {out}/label_issues.csv and duplicate_groups.csv")
