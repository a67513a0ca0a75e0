"""`python -m fashion_fastai.app RUN_DIR_OR_MODEL`: a Gradio page to try a trained stage on one product photo.

A web page lets someone judge a model by showing it their own photos, without a terminal. It must not become a second,
subtly different inference path, so it is a thin command over inference.py, as `predict` is: the same model loading
(weights-only form preferred, the pickle only with --trust-pickle), the same device choice and the same `predict_paths`.
The upload reaches the model as the very file the user chose (`type="filepath"`, no colour-mode conversion by Gradio,
which would re-encode a greyscale or CMYK JPEG), so the page shows exactly what `python -m fashion_fastai.predict`
prints for that file. Gradio is imported only to build the page, with its analytics and the Hugging Face Hub switched
off first, so that the demo contacts nothing and a user error (a missing or damaged model, a port that cannot be served)
is reported at once.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastcore.script import call_parse

from .cli import command
from .errors import OptionError
from .data import LABEL
from .inference import ANSWER_ORDER, DEVICES, ENGINES, exported, default_model, load_model, models_help, predict_paths, \
    resolve_device
from .models import FIRST, NAMES, STAGES, spec

STAGE_CHOICES = ('auto', *NAMES, 'both')  # auto: the model `predict` answers with; both: the protocol's two stages


def title(name: str, n: int) -> str:
    "A model's heading on the page: its title in the run's table, or its file name for a file from elsewhere."
    return spec(name).describe(n) if name in NAMES else f'{name}: {n} classes'


def shown_models(run_dir: Path, stage: str) -> list:
    """The models of a run folder that `stage` shows: `auto` as `predict` answers, `both` the protocol's stages the run
    has (a run trained with --epochs2 0 has no stage two; with neither, loading says what is wrong), else that one."""
    if stage == 'auto': return [default_model(run_dir)]  # None: loading says what the folder lacks
    if stage == 'both': return [s for s in STAGES if s in exported(run_dir)] or [FIRST]
    return [stage]


def load_predictors(model: Path,                # run folder, <model>.json or <model>.pkl
                    stage: str = 'auto',        # auto (the model `predict` answers with), a model's name, or both stages
                    trust_pickle: bool = False, # load .pkl files even when a weights-only form exists
                    device: str = 'auto',       # auto, cpu or cuda (`inference.resolve_device`)
                    engine: str = 'torch',      # torch, or onnx (ONNX Runtime on the run's exported graphs)
                    ) -> dict:
    "{title: predictor} for the models to show, in the run's order."
    if stage not in STAGE_CHOICES: raise OptionError(f"--stage must be one of {', '.join(STAGE_CHOICES)}, got {stage!r}.")
    model = Path(model)
    kw = dict(device=device, engine=engine)
    if model.is_dir(): loaded = {s: load_model(model, s, trust_pickle, **kw) for s in shown_models(model, stage)}
    else: loaded = {model.stem: load_model(model, None, trust_pickle, **kw)}  # a file: its own model, as in predict
    return {title(s, len(p.vocab)): p for s, p in loaded.items()}


def classify(predictors: dict,  # {title: predictor}, as from `load_predictors`
             path,              # image file (None: no image, so nothing to show)
             topk: int = 5,     # classes per stage
             ) -> list:
    """One {class: probability} per stage, best first, then one per other attribute of that stage's model ({value:
    probability} of its best value): `predict_paths`'s answer for this file, as `gr.Label` takes it (see `labels`)."""
    if path is None: return [None] * len(labels(predictors))
    out = []
    for predictor in predictors.values():
        results, skipped = predict_paths(predictor, [path], topk)
        if skipped: raise ValueError(f"Not a readable image ({skipped[0]['error']}).")
        out.append({t['class']: t['prob'] for t in results[0]['top']})
        out += [{a['class']: a['prob']} for a in results[0].get('attributes', {}).values()]
    return out


def labels(predictors: dict) -> list:
    "The page's outputs in `classify`'s order: each stage's title, then its other attributes' names."
    return [name for title, p in predictors.items() for name in (title, *(h for h in p.vocabs if h != LABEL))]


def import_gradio():
    "Gradio, imported with its usage analytics and the Hugging Face Hub switched off (the demo contacts nothing)."
    os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
    os.environ['HF_HUB_OFFLINE'] = '1'
    import gradio as gr
    return gr


def build_app(predictors: dict,  # {title: predictor}, as from `load_predictors`
              topk: int = 5,     # classes shown per stage
              source: str = '',  # where the model came from, shown on the page
              ):
    "The Gradio page (not launched): one image in, one `gr.Label` per stage out."
    gr = import_gradio()

    def predict(path):
        try: out = classify(predictors, path, topk)
        except ValueError as e: raise gr.Error(str(e))
        return out[0] if len(out) == 1 else out

    return gr.Interface(
        predict,
        inputs=gr.Image(type='filepath', image_mode=None, sources=['upload', 'clipboard'], label='Product photo'),
        outputs=[gr.Label(num_top_classes=topk, label=title) for title in labels(predictors)],
        live=True, flagging_mode='never', title='Fashion product classifier',
        description=f"Upload a product photo to see the top-{topk} article types and their probabilities"
                    + (f" from `{source}`." if source else "."))


@call_parse
@command('app')
def main(model: str,                 # run folder, <model>.json (weights-only) or <model>.pkl (exported learner)
         port: int = 7860,           # port to serve the page on
         stage: Annotated[str, {'help': f"which models to show: auto ({ANSWER_ORDER[0]} when the run has it, else "
                                        f"{FIRST}, as predict answers), both ({' and '.join(STAGES)} side by side) or "
                                        f"one of {models_help()} (default: auto)"}] = 'auto',
         host: str = '127.0.0.1',    # address to listen on (0.0.0.0 to let other machines in)
         trust_pickle: bool = False, # load the .pkl even when a weights-only form exists (unpickling runs code)
         device: Annotated[str, {'help': f"where the models run: {', '.join(DEVICES)} (auto: CUDA when torch sees a "
                                         f"GPU, else the CPU) (default: auto)"}] = 'auto',
         engine: Annotated[str, {'help': f"what runs the models: {' or '.join(ENGINES)} (ONNX Runtime on the graphs "
                                         f"`python -m fashion_fastai.export RUN` wrote) (default: torch)"}] = 'torch',
         ):
    "Serve a web page that shows the top-5 article types of an uploaded product photo."
    if not 0 < port < 65536: raise OptionError(f"--port must be a port number from 1 to 65535, got {port}.")
    resolve_device(device)
    predictors = load_predictors(Path(model), stage, trust_pickle, device, engine)
    demo = build_app(predictors, source=model)
    try: demo.launch(server_name=host, server_port=port, share=False)
    except OSError as e:
        raise OptionError(f"cannot serve on {host}:{port} ({e}): pass another --port (is another program, or this "
                          f"page, already serving there?) or check --host.") from e
