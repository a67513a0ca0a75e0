"""`python -m fashion_fastai.predict MODEL PATH...`: top-k classes for image files and folders.

A thin command over inference.py, which finds the model (a run folder, a weights-only `<model>.json` or an exported
`<model>.pkl`: the weights-only form whenever it exists, because unpickling runs code from the file), loads it on the
device and in the processes asked for, and predicts.  Every input is checked before the first prediction: a model that
is missing or not what its name says, or a folder without images, stops the command with one line saying what to do; a
file that cannot be read as an image is reported and skipped, and the rest are still predicted.
"""
from __future__ import annotations

import json as jsonlib, sys
from pathlib import Path
from typing import Annotated

from fastcore.script import call_parse

from fashion_fastai.cli import command
from fashion_fastai.core.errors import OptionError
from fashion_fastai.catalogue.index import similar_index
from fashion_fastai.answering.answering import REVIEW_PROB
from fashion_fastai.core.models import ANSWER_ORDER, FIRST
from fashion_fastai.inference.answers import answering_note, answers
from fashion_fastai.inference.load import load_model_file
from fashion_fastai.inference.locate import ENGINES, MODEL_HELP, choose_engine, expand_paths, find_model, models_help, readable
from fashion_fastai.inference.predictors import DEVICES, resolve_device


def check_options(paths, topk: int, processes: int, min_prob, device: str) -> None:
    "Every option that cannot work, refused before the model is loaded or an image read."
    if not paths: raise OptionError(f"give at least one image file or folder after MODEL ({MODEL_HELP}).")
    if topk < 1: raise OptionError(f"--topk must be at least 1, got {topk}.")
    if processes < 1: raise OptionError(f"--processes must be at least 1, got {processes}.")
    if min_prob is not None and not 0 < min_prob <= 1:
        raise OptionError(f"--min-prob must be a probability in (0, 1], e.g. 0.5; got {min_prob}.")
    resolve_device(device)


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
def main(model: str,                 # run folder, <model>.json (weights-only) or <model>.pkl (exported learner)
         *paths: Annotated[str, {'nargs': '+'}], # image files and/or folders (searched recursively)
         topk: int = 5,              # how many classes to show per image
         stage: Annotated[str, {'help': f"which model of a run folder: {models_help()} (default: {ANSWER_ORDER[0]} "
                                        f"when the run has it, else {FIRST})"}] = None,
         json: bool = False,         # print JSON (predictions and skipped inputs) instead of a table
         trust_pickle: bool = False, # load the .pkl even when a weights-only form exists (unpickling runs code)
         processes: int = 1,         # worker processes sharing the images, one torch thread each (many files, small models); they use the CPU unless --device cuda
         min_prob: float = REVIEW_PROB, # mark a prediction whose best class has a lower (calibrated) probability as uncertain: it needs review
         device: Annotated[str, {'help': f"where the model runs: {', '.join(DEVICES)} (auto: CUDA when torch sees a "
                                         f"GPU, else the CPU) (default: auto)"}] = 'auto',
         engine: Annotated[str, {'help': f"what runs the model: {' or '.join(ENGINES)} (ONNX Runtime on the graph "
                                         f"`python -m fashion_fastai.export RUN` wrote; no PyTorch needed to run it) "
                                         f"(default: torch)"}] = 'torch',
         similar: int = 0,           # with --index: also the K most alike catalogue products of each photo
         index: str = None,          # a catalogue index from `python -m fashion_fastai.index`, built with this model
         closed_set: bool = False,   # the trained classes alone, without the zero-shot ones (as the published runs scored)
         ):
    "Predict the top-k article types of product images with a trained model."
    check_options(paths, topk, processes, min_prob, device)
    found = choose_engine(find_model(Path(model), stage, trust_pickle), engine)
    catalogue, _ = similar_index(index, similar, [found], engine, processes) or (None, 0)
    files = expand_paths(paths)  # a folder without images stops here, before the model is loaded
    with load_model_file(*found, device, processes, closed_set=closed_set) as predictor:
        files, skipped = readable(files)
        results, note = [], answering_note(predictor)
        if files:
            if catalogue is None: heads, routed = predictor.answer_probs(files)
            else:  # one pass: answers and embeddings
                embeddings, heads = predictor.embed(files)
                heads, routed = predictor.answered(heads, files)
            results = answers(predictor, files, heads, topk, min_prob, routed)
        if catalogue is not None and results:
            for r, near in zip(results, catalogue.neighbours(embeddings.numpy(), similar)): r['similar'] = near
    if json: print(jsonlib.dumps({'predictions': results, 'skipped': skipped, 'answering': note}, indent=1))
    else: print_table(results)
    if not note['zero_shot']: print(f"no zero-shot answers: {note['why_not']}", file=sys.stderr)
    for s in skipped: print(f"skipped {s['path']}: {s['error']}", file=sys.stderr)
    if skipped: print(f"{len(skipped)} of {len(results) + len(skipped)} inputs skipped", file=sys.stderr)
    if not results: sys.exit(1)
