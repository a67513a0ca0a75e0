"""`python -m fashion_fastai.predict MODEL PATH...`: top-k classes for image files and folders.

MODEL is a run folder, a weights-only `<stage>.json`, or an exported `<stage>.pkl`.  The weights-only form is preferred
whenever it exists, because unpickling a `.pkl` runs code from the file; the `.pkl` is used only with `--trust-pickle` or
when it is all there is (with a warning).  A file that cannot be read as an image is reported and skipped; the rest are
still predicted.
"""
from __future__ import annotations

import json as jsonlib, sys, warnings
from pathlib import Path
from typing import Annotated

from fastcore.script import call_parse

from .cli import command
from .errors import ModelError, OptionError
from .data import LABEL
from .images import image_problem

IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff'}
STAGES = ('all', 'stage1', 'stage2')  # the all-classes model, the protocol's two stages


def default_stage(run_dir: Path) -> str:
    """The all-classes model when the run folder has one: one answer among every article type, which is what someone
    holding a photo asks.  A run from before it (or with --epochs-all 0) answers with stage one, and says so."""
    if any((run_dir / f'all.{ext}').exists() for ext in ('json', 'pkl')): return 'all'
    warnings.warn(f"{run_dir} has no all-classes model (a run from an older version, or trained with --epochs-all 0): "
                  f"answering among stage one's classes only; --stage stage2 gives the rare ones.")
    return 'stage1'


def find_model(model: Path, stage: str = None, trust_pickle: bool = False) -> tuple[Path, str]:
    """Which file to load and in which form ('weights' or 'pickle'), preferring the weights-only form.  `stage` picks
    one model of a run folder (None: `default_stage`)."""
    model = Path(model)
    if stage is not None and stage not in STAGES:
        raise OptionError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}.")
    if model.is_dir():
        stage = stage or default_stage(model)
        forms = [model / f'{stage}.pkl', model / f'{stage}.json'] if trust_pickle else [model / f'{stage}.json', model / f'{stage}.pkl']
        if not any(f.exists() for f in forms):
            there = [f.name for ext in ('json', 'pkl') for s in STAGES for f in [model / f'{s}.{ext}'] if f.exists()]
            why = (f"it holds {', '.join(there)}: choose another --stage"
                   + (" (or was it trained with --epochs2 0?)" if stage == 'stage2' else '') if there else
                   "is the run still training, or did it stop before exporting?")
            raise ModelError(f"Run folder {model} has no {stage}.json or {stage}.pkl: {why}")
        model = next(f for f in forms if f.exists())
    if model.suffix == '.pth' and model.is_file():  # the state_dict of the weights-only form: its .json says how to use it
        if not model.with_suffix('.json').is_file():
            raise ModelError(f"{model} is a bare state_dict: pass the {model.with_suffix('.json').name} written beside it "
                             f"(arch, vocab, size), which is missing here.")
        model = model.with_suffix('.json')
    if model.suffix == '.pkl':
        twin = model.with_suffix('.json')
        if not trust_pickle and twin.exists(): return twin, 'weights'
        if not model.exists(): raise ModelError(f"Model file {model} not found: pass a run folder, a <stage>.json or a <stage>.pkl.")
        if not trust_pickle:
            warnings.warn(f"{model}: no weights-only form ({twin.name}) beside it, so loading the pickle, which runs code "
                          f"from the file. Only do this with files you trust (pass --trust-pickle to silence this).")
        return model, 'pickle'
    if model.suffix == '.json' and model.exists(): return model, 'weights'
    if model.exists():
        raise ModelError(f"{model} is not a model file: pass a run folder, a <stage>.json (weights-only) or a <stage>.pkl "
                         f"(exported learner).")
    raise ModelError(f"Model {model} not found: pass a run folder (with {stage}.json or {stage}.pkl), "
                            f"a <stage>.json (weights-only) or a <stage>.pkl (exported learner).")


def load_model(model: Path, stage: str = None, trust_pickle: bool = False, processes: int = 1):
    """A predictor with `.vocab` and `.probs(paths)`; a file that cannot be loaded gives a `ModelError` naming it and what
    to use. With `processes` > 1, a `ProcessPredictor` that shares `probs` among that many worker processes, each loading
    the model after this process has checked that it loads (close it when done, or use it as a context manager)."""
    path, form = find_model(model, stage, trust_pickle)
    loaded = load_model_file(path, form)
    if processes <= 1: return loaded
    from .processes import ProcessPredictor
    return ProcessPredictor(path, form, loaded.vocabs, processes)


def load_model_file(path: Path, form: str):
    "`find_model`'s choice loaded: 'weights' as a `WeightsOnlyModel`, 'pickle' as a `PickledLearner`."
    from .artifacts import WeightsOnlyModel, PickledLearner
    if form == 'weights':
        try: return WeightsOnlyModel(path)
        except Exception as e:
            pkl = path.with_suffix('.pkl')
            raise ModelError(f"Could not load the weights-only model {path} and the state_dict it names "
                             f"({type(e).__name__}: {str(e)[:300]}). Both files come from the same run folder; "
                             + (f"the exported learner {pkl} may still load with --trust-pickle (it runs code from the file)."
                                if pkl.is_file() else "copy them again, or retrain.")) from e
    try: return PickledLearner(path)
    except Exception as e:
        twin = path.with_suffix('.json')
        why = (f"it names a module or class that this installation lacks" if isinstance(e, UnboundLocalError) else
               f"{type(e).__name__}: {str(e)[:300]}")  # fastai's load_learner swallows an ImportError, then fails on `res`
        raise ModelError(f"Could not load the exported learner {path} ({why}). A .pkl loads "
                         f"only if intact and with the fastai/torch versions that wrote it; use the weights-only form "
                         + (f"{twin} instead (it is right there: drop --trust-pickle)." if twin.is_file() else
                            f"{twin.name} + {path.with_suffix('.pth').name} from the same run instead, which loads with "
                            f"any version.")) from e


def expand_paths(paths) -> list[Path]:
    "Files as given, folders walked recursively for image files, in a stable order."
    out = []
    for p in map(Path, paths):
        if p.is_dir(): out += sorted(f for f in p.rglob('*') if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        else: out.append(p)
    return out


def predict_paths(predictor, paths, topk: int = 5, min_prob: float = None) -> tuple[list, list]:
    """Top-k article types for the readable images (and, from a model with other attributes, each one's best value under
    `attributes`), and the skipped ones with reasons.  With `min_prob`, each prediction says whether it is `uncertain`
    (its best article type below that probability); nothing is dropped or relabelled."""
    files, skipped = [], []
    for p in expand_paths(paths):
        why = 'file not found' if not p.exists() else image_problem(p)
        (skipped.append({'path': str(p), 'error': why}) if why else files.append(p))
    results = []
    if files:
        heads = predictor.head_probs(files)
        probs = heads.pop(LABEL)
        k = min(topk, probs.shape[1])
        vals, idxs = probs.topk(k, dim=1)
        best = {h: p.max(dim=1) for h, p in heads.items()}
        for n, (f, v, i) in enumerate(zip(files, vals.tolist(), idxs.tolist())):
            results.append({'path': str(f), 'top': [{'class': predictor.vocab[j], 'prob': round(p, 4)} for p, j in zip(v, i)]})
            if heads: results[-1]['attributes'] = {h: {'class': predictor.vocabs[h][int(b.indices[n])],
                                                       'prob': round(float(b.values[n]), 4)} for h, b in best.items()}
            if min_prob is not None: results[-1]['uncertain'] = v[0] < min_prob
    return results, skipped


@call_parse
@command('predict')
def main(model: str,                 # run folder, <stage>.json (weights-only) or <stage>.pkl (exported learner)
         *paths: Annotated[str, {'nargs': '+'}], # image files and/or folders (searched recursively)
         topk: int = 5,              # how many classes to show per image
         stage: str = None,          # which model of a run folder: all (every article type; the default when the run has it), stage1 (top-20 classes) or stage2 (rare classes)
         json: bool = False,         # print JSON (predictions and skipped inputs) instead of a table
         trust_pickle: bool = False, # load the .pkl even when a weights-only form exists (unpickling runs code)
         processes: int = 1,         # worker processes sharing the images, one torch thread each (many files, small models)
         min_prob: float = None,     # mark a prediction whose best class has a lower probability as uncertain
         ):
    "Predict the top-k article types of product images with a trained model."
    if not paths: raise OptionError("give at least one image file or folder after MODEL.")
    if topk < 1: raise OptionError(f"--topk must be at least 1, got {topk}.")
    if processes < 1: raise OptionError(f"--processes must be at least 1, got {processes}.")
    if min_prob is not None and not 0 < min_prob <= 1:
        raise OptionError(f"--min-prob must be a probability in (0, 1], e.g. 0.5; got {min_prob}.")
    predictor = load_model(Path(model), stage, trust_pickle, processes)
    try: results, skipped = predict_paths(predictor, paths, topk, min_prob)
    finally:
        if processes > 1: predictor.close()
    if json: print(jsonlib.dumps({'predictions': results, 'skipped': skipped}, indent=1))
    else:
        for r in results:
            print(f"{r['path']}: " + ', '.join(f"{t['class']} {100 * t['prob']:.1f}%" for t in r['top'])
                  + ('  (uncertain)' if r.get('uncertain') else '')
                  + ''.join(f"; {h} {a['class']} {100 * a['prob']:.1f}%" for h, a in r.get('attributes', {}).items()))
    for s in skipped: print(f"skipped {s['path']}: {s['error']}", file=sys.stderr)
    if skipped: print(f"{len(skipped)} of {len(results) + len(skipped)} inputs skipped", file=sys.stderr)
    if not results: sys.exit(1)
