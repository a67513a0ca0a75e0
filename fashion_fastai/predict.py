"""`python -m fashion_fastai.predict MODEL PATH...`: top-k classes for image files and folders.

A thin command over the inference package, which finds the model (a run folder, a weights-only `<model>.json` or
an exported `<model>.pkl`: the weights-only form whenever it exists, because unpickling runs code from the file),
loads it on the device and in the processes asked for, and predicts.  Every input is checked before the first
prediction: a model that is missing or not what its name says, or a folder without images, stops the command with one
line saying what to do; a file that cannot be read as an image is reported and skipped, and the rest are still
predicted.
"""
from __future__ import annotations

import json as jsonlib, sys
from pathlib import Path
from typing import Annotated

from fastcore.script import call_parse

from fashion_fastai.cli import command
from fashion_fastai.core.errors import OptionError
from fashion_fastai.catalogue.index import similar_index
from fashion_fastai.inference.answers import answering_note, predict_paths
from fashion_fastai.inference.load import load_model_file
from fashion_fastai.inference.locate import choose_engine, expand_paths, find_model
from fashion_fastai.inference.options import (DEFAULT, ClosedSet, Device, Engine, MinProb, Model, Processes, Stage,
                                              TrustPickle, check_model_options)


def check_options(paths, topk: int, **options) -> None:
    "Every option that cannot work, refused before the model is loaded or an image read: the model options' one check."
    check_model_options(paths, **options)
    if topk < 1: raise OptionError(f"--topk must be at least 1, got {topk}.")


def print_table(results: list) -> None:
    "One line per image: its top-k article types, then each other attribute's best value."
    for r in results:
        print(f"{r['path']}: " + ', '.join(f"{t['class']} {100 * t['prob']:.1f}%" for t in r['top'])
              + ('  (zero-shot)' if r.get('zero_shot') else '') + ('  (uncertain)' if r.get('uncertain') else '')
              + ''.join(f"; {h} {a['class']} {100 * a['prob']:.1f}%" for h, a in r.get('attributes', {}).items())
              + (' | similar: ' + ', '.join(f"{n['id']} {n['label']} {n['score']:.2f}" for n in r['similar'])
                 if 'similar' in r else ''))


@call_parse
@command('predict')
def main(model: Model,
         *paths: Annotated[str, {'nargs': '+'}], # image files and/or folders (searched recursively)
         topk: int = 5,              # how many classes to show per image
         stage: Stage = DEFAULT.stage,
         json: bool = False,         # print JSON (predictions and skipped inputs) instead of a table
         trust_pickle: TrustPickle = DEFAULT.trust_pickle,
         processes: Processes = DEFAULT.processes,
         min_prob: MinProb = DEFAULT.min_prob,
         device: Device = DEFAULT.device,
         engine: Engine = DEFAULT.engine,
         similar: int = 0,           # with --index: also the K most alike catalogue products of each photo
         index: str = None,          # a catalogue index from `python -m fashion_fastai.index`, built with this model
         closed_set: ClosedSet = DEFAULT.closed_set,
         ):
    "Predict the top-k article types of product images with a trained model."
    check_options(paths, topk, stage=stage, engine=engine, device=device, processes=processes, min_prob=min_prob)
    found = choose_engine(find_model(Path(model), stage, trust_pickle), engine)
    catalogue, _ = similar_index(index, similar, [found], engine, processes) or (None, 0)
    files = expand_paths(paths)  # a folder without images stops here, before the model is loaded
    with load_model_file(*found, device, processes, closed_set=closed_set) as predictor:
        note = answering_note(predictor)
        results, skipped, *embedded = predict_paths(predictor, files, topk, min_prob, embed=catalogue is not None)
        if catalogue is not None and results:  # the embeddings come from the pass that answered
            for r, near in zip(results, catalogue.neighbours(embedded[0].numpy(), similar)): r['similar'] = near
    if json: print(jsonlib.dumps({'predictions': results, 'skipped': skipped, 'answering': note}, indent=1))
    else: print_table(results)
    if not note['zero_shot']: print(f"no zero-shot answers: {note['why_not']}", file=sys.stderr)
    for s in skipped: print(f"skipped {s['path']}: {s['error']}", file=sys.stderr)
    if skipped: print(f"{len(skipped)} of {len(results) + len(skipped)} inputs skipped", file=sys.stderr)
    if not results: sys.exit(1)
