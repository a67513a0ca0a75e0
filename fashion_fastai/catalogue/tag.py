"""`python -m fashion_fastai.tag MODEL FOLDER... --out tags.csv`: tag a catalogue's photos into a CSV in `styles.csv`'s
column layout, one row per image, for the people behind a catalogue.

A command of its own rather than `predict --csv`: its contract is a file that grows, not an answer to print.  Rows are
written chunk by chunk as they are predicted (flushed and synced to disk), so a run killed at any moment loses at most
the chunk in flight, and the same command run again continues after the last whole row: a row is never written twice
(a line cut short by the kill is dropped, and its image tagged again).  Unreadable files are counted and listed in
`<out>.skipped.csv` (path, reason), never fatal; so are two files whose names give the same id (`01.jpg`, `1.jpg`: the
first keeps it).  Memory holds the file names and one chunk, whatever the number of images.

A row is `predict`'s answer for its photo, through the same function (`answers`): the calibrated probabilities with the
zero-shot classes joined, masterCategory and subCategory agreeing with the article type where the run's holdout chose
so, and `needs_review` exactly predict's `uncertain` (the article type's probability under the run's review rule, or
under `--min-prob` when given).
"""
from __future__ import annotations

import csv, os, sys
from pathlib import Path
from typing import Annotated

from fastcore.script import call_parse
from fastprogress.fastprogress import progress_bar

from fashion_fastai.cli import command
from fashion_fastai.core.schema import COLUMNS, LABEL, image_id
from fashion_fastai.core.errors import DataError, OptionError
from fashion_fastai.inference.answers import answer_files, answers
from fashion_fastai.inference.load import load_model_file
from fashion_fastai.inference.locate import choose_engine, expand_paths, find_model, readable
from fashion_fastai.inference.options import (DEFAULT, ClosedSet, Device, Engine, MinProb, Model, Processes, Stage,
                                              TrustPickle, check_model_options)

SKIPPED_COLUMNS = ['path', 'reason']  # <out>.skipped.csv: the files not tagged, and why


def header(vocabs: dict) -> list:
    """`id`, then each head the model has in `styles.csv`'s column order with its probability,
    then `needs_review`, `file`."""
    heads = [c for c in COLUMNS if c in vocabs] + [h for h in vocabs if h not in COLUMNS]
    return ['id', *(x for h in heads for x in (h, f'{h}_prob')), 'needs_review', 'file']


def finished_rows(path: Path, columns: list, what: str) -> list:
    """The rows an earlier run appended to `path` (a CSV with the header `columns`), after cutting off a last line that
    a kill left without its newline: it was not finished, and the next row must start a line of its own.  A file that is
    not such a CSV (not text, or other columns: another model's) is refused before anything in it is changed."""
    if not path.is_file() or not path.stat().st_size: return []
    data = path.read_bytes()
    try: text = data.decode('utf-8')
    except UnicodeDecodeError:
        raise OptionError(f"{what} {path} is not a CSV (not text): it was not written by tag; choose another "
                          f"--out.") from None
    head = ','.join(columns)
    if '\n' not in text and head.startswith(text): found = columns  # the header itself cut short: nothing finished
    else: found = next(csv.reader([text.split('\n', 1)[0]]), None)
    if found != columns:
        raise OptionError(f"{what} {path} holds other columns ({', '.join(found or ['none'])}) than this model writes "
                          f"({', '.join(columns)}): it comes from another model or program; choose another --out.")
    if not data.endswith(b'\n'):
        with open(path, 'rb+') as f: f.truncate(data.rfind(b'\n') + 1)
    return [r for r in csv.reader(text[:text.rfind('\n') + 1].splitlines()[1:]) if r]


def done_so_far(out: Path, skipped: Path, columns: list) -> tuple[dict, set]:
    """What an earlier run of the same command finished: {id: file} tagged, and the files it skipped (`finished_rows`
    of each file).  An `out` from another model (other columns) is refused rather than mixed."""
    tagged = {r[0]: r[-1] for r in finished_rows(out, columns, '--out')}
    return tagged, {r[0] for r in finished_rows(skipped, SKIPPED_COLUMNS, 'the list of skipped files')}


def writable(out: Path) -> None:
    "Refuse an --out that cannot be written now, before any image is read."
    if out.is_dir(): raise OptionError(f"--out {out} is a folder: give a file name, e.g. {out / 'tags.csv'}.")
    if not out.parent.is_dir():
        raise OptionError(f"--out {out}: its folder {out.parent} does not exist; create it or choose another --out.")
    try:
        with open(out, 'a'): pass
    except OSError as e:
        raise OptionError(f"--out {out} cannot be written ({e.strerror}): choose another --out.") from e


def append_rows(path: Path, rows: list, columns: list) -> None:
    "Append whole rows (the header first, for a new file), flushed and synced: what is on disk is finished."
    new = not path.is_file() or not path.stat().st_size
    with open(path, 'a', newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        if new: w.writerow(columns)
        w.writerows(rows)
        f.flush(); os.fsync(f.fileno())


def tag_rows(predictor, files: list, min_prob: float = None) -> list:
    """One row per file: the article type and every other head's value with its probability, and `needs_review`, as
    `predict` answers the photo (`answers`: calibrated, with the zero-shot classes, the categories the article type
    decides, the review rule), then the file."""
    heads, routed, _ = answer_files(predictor, files)
    results = answers(predictor, files, heads, topk=1, min_prob=min_prob, routed=routed)
    columns = header(predictor.vocabs)[1:-2:2]
    rows = []
    for f, r in zip(files, results):
        given = {LABEL: r['top'][0], **r.get('attributes', {})}
        rows.append([image_id(f), *(x for h in columns for x in (given[h]['class'], f"{given[h]['prob']:.4f}")),
                     r['uncertain'], str(f)])
    return rows


def tag(predictor, paths, out: Path, min_prob: float = None, chunk: int = 256, show=None) -> dict:
    """Tag the images under `paths` into `out`, continuing after what an earlier run finished; returns counts.  `show`:
    a progress bar (None: on a terminal only)."""
    out = Path(out)
    writable(out)
    skipped_path = out.with_name(out.name + '.skipped.csv')
    columns = header(predictor.vocabs)
    tagged, done_skips = done_so_far(out, skipped_path, columns)
    done, seen = set(tagged.values()) | done_skips, dict(tagged)
    files, skips = [], []
    for f in expand_paths(paths):
        if str(f) in done: continue
        i = image_id(f)
        if i in seen: skips.append([str(f), f'duplicate id {i}: {seen[i]} has it']); continue
        seen[i] = str(f)
        files.append(f)
    counts = dict(tagged=0, skipped=0, already=len(tagged))
    show = sys.stdout.isatty() if show is None else show
    batches = [files[i:i + chunk] for i in range(0, len(files), chunk)]
    for batch in (progress_bar(batches) if show and batches else batches):
        ok, unreadable = readable(batch)
        skips += [[s['path'], s['error']] for s in unreadable]
        if ok: append_rows(out, tag_rows(predictor, ok, min_prob), columns)
        if skips: append_rows(skipped_path, skips, SKIPPED_COLUMNS); counts['skipped'] += len(skips); skips = []
        counts['tagged'] += len(ok)
        if not show: print(f"tag: {counts['tagged']} of {len(files)} images tagged into {out}", flush=True)
    if skips: append_rows(skipped_path, skips, SKIPPED_COLUMNS); counts['skipped'] += len(skips)
    return counts


@call_parse
@command('tag')
def main(model: Model,
         *paths: Annotated[str, {'nargs': '+'}],  # image folders (searched recursively) and/or files
         out: str = 'tags.csv',      # the CSV to write, or to continue when it exists
         stage: Stage = DEFAULT.stage,
         min_prob: MinProb = DEFAULT.min_prob,
         chunk: int = 256,           # images predicted and written at a time (what a kill can lose)
         engine: Engine = DEFAULT.engine,
         device: Device = DEFAULT.device,
         processes: Processes = DEFAULT.processes,
         trust_pickle: TrustPickle = DEFAULT.trust_pickle,
         closed_set: ClosedSet = DEFAULT.closed_set,
         ):
    "Tag every product photo under the folders into a CSV in styles.csv's layout, resumable after an interruption."
    check_model_options(paths, stage=stage, engine=engine, device=device, processes=processes, min_prob=min_prob)
    if chunk < 1: raise OptionError(f"--chunk must be at least 1, got {chunk}.")
    writable(Path(out))
    found = choose_engine(find_model(Path(model), stage, trust_pickle), engine)
    with load_model_file(*found, device, processes, closed_set=closed_set) as predictor:
        counts = tag(predictor, paths, Path(out), min_prob, chunk)
    print(f"tag: {counts['tagged']} images tagged into {out}"
          + (f", {counts['already']} done by an earlier run" if counts['already'] else '')
          + (f"; {counts['skipped']} skipped, listed in {out}.skipped.csv" if counts['skipped'] else ''), flush=True)
    if not counts['tagged'] and not counts['already']:
        raise DataError(f"no image under {', '.join(paths)} could be tagged.")
