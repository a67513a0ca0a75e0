"""`python -m fashion_fastai.app RUN_DIR_OR_MODEL`: a Gradio page to try a trained stage on one product photo.

A web page lets someone judge a model by showing it their own photos, without a terminal. It must not become a second,
subtly different inference path, so it is a thin command over the inference package, as `predict` is: the same model
loading (weights-only form preferred, the pickle only with --trust-pickle), the same device choice and the same
`predict_paths`. The upload reaches the model as the very file the user chose (`type="filepath"`, no colour-mode
conversion by Gradio, which would re-encode a greyscale or CMYK JPEG), so the page shows exactly what `python -m
fashion_fastai.predict` prints for that file. Gradio is imported only to build the page, with its analytics and the
Hugging Face Hub switched off first, so that the demo contacts nothing and a user error (a missing or damaged model, a
port that cannot be served) is reported at once.

With `--similar K --index FILE` a gallery under the labels shows the K catalogue products most alike the photo, as
`predict --similar` lists them, with the same checks (`index.similar_index`).  The photo is embedded by the first shown
model whose weights made the index (with `--stage both` and an index of stage two, stage two), so that any index of
a shown model works and the choice needs no option of its own.  The index's photos are checked to be there at start:
the page shows them, and an index built elsewhere, or with relative paths from another folder, would show none.  They
reach Gradio as pixels, not as files: Gradio serves a file from elsewhere only from a folder allowed whole, which would
open everything in the catalogue's folders (a home folder, for photos indexed there) to whoever reaches the page.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastcore.script import call_parse

from fashion_fastai.cli import command
from fashion_fastai.core.errors import OptionError
from fashion_fastai.core.schema import LABEL
from fashion_fastai.catalogue.index import Index, similar_index
from fashion_fastai.core.models import ANSWER_ORDER
from fashion_fastai.inference.answers import answer_readable
from fashion_fastai.inference.load import load_model_file
from fashion_fastai.inference.locate import choose_engine, exported, default_model, find_model, models_help, readable
from fashion_fastai.inference.options import DEFAULT, ClosedSet, Device, Engine, Model, TrustPickle, check_model_options
from fashion_fastai.inference.predictors import WeightsOnlyModel
from fashion_fastai.core.models import CHOICES, FIRST, JOINED, NAMES, STAGES, spec
from fashion_fastai.data.pixels import open_rgb

STAGE_CHOICES = ('auto', *CHOICES, 'both')  # auto: the model `predict` answers with; both: the protocol's two stages


def title(name: str, n: int) -> str:
    "A model's heading on the page: its title in the run's table, or its file name for a file from elsewhere."
    if name == JOINED: return f'Every article type ({n} classes): each stage for its part, weighed by a part gate'
    return spec(name).describe(n) if name in NAMES else f'{name}: {n} classes'


def shown_models(run_dir: Path, stage: str) -> list:
    """The models of a run folder that `stage` shows: `auto` as `predict` answers, `both` the protocol's stages the run
    has (a run trained with --epochs2 0 has no stage two; with neither, loading says what is wrong), else that one."""
    if stage == 'auto': return [default_model(run_dir)]  # None: loading says what the folder lacks
    if stage == 'both': return [s for s in STAGES if s in exported(run_dir)] or [FIRST]
    return [stage]


def shown_files(model: Path, stage: str = 'auto', trust_pickle: bool = False, engine: str = 'torch') -> dict:
    """{name: (file, form)} of the models to show, as `predict` would choose them: known before any is loaded, so that
    --similar's checks come first."""
    if stage not in STAGE_CHOICES:
        raise OptionError(f"--stage must be one of {', '.join(STAGE_CHOICES)}, got {stage!r}.")
    model = Path(model)
    if not model.is_dir(): return {model.stem: choose_engine(find_model(model, None, trust_pickle), engine)}  # its own
    return {s: choose_engine(find_model(model, s, trust_pickle), engine) for s in shown_models(model, stage)}


@dataclass
class Catalogue:
    "What the gallery searches: an index, the shown model whose embeddings it holds, and how many products to show."
    index: Index
    model: WeightsOnlyModel  # the only form that embeds (`similar_index` refuses the others)
    k: int

    def answer(self, path, topk: int = 5) -> tuple[dict, list]:
        """The embedding model's `answer_readable` answer for the photo and its `k` nearest catalogue products ({id,
        label, score, file} each: what `predict --similar` adds), from one forward pass of the trained model."""
        (result,), embeddings = answer_readable(self.model, [path], topk, embed=True)
        return result, self.index.neighbours(embeddings.numpy(), self.k)[0]

    def neighbours(self, path) -> list: return self.answer(path)[1]


def open_index(index: str, similar: int, found: dict, engine: str) -> tuple[Index, int] | None:
    """`similar_index`'s index and the position among `found` of the model that embeds for it (None without --similar),
    its photos checked to be there to show."""
    chosen = similar_index(index, similar, list(found.values()), engine)
    if chosen is None: return None
    files = chosen[0].files
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise OptionError(f"--index {index}: {len(missing)} of its {len(files)} photos are not there to show (e.g. "
                          f"{missing[0]}): run the page where the catalogue's photos are (from the folder the index "
                          f"was built in, for relative paths), or build the index again.")
    return chosen


def load_page(model: Path, stage: str = 'auto', trust_pickle: bool = False, device: str = 'auto', engine: str = 'torch',
              similar: int = 0, index: str = None, closed_set: bool = False) -> tuple[dict, Catalogue | None]:
    """`load_predictors`'s {title: predictor} and, with --similar, the gallery's `Catalogue` (else None); every option
    is checked before the first model is loaded (see `main` for each one)."""
    found = shown_files(model, stage, trust_pickle, engine)
    chosen = open_index(index, similar, found, engine)
    loaded = {s: load_model_file(*f, device, closed_set=closed_set) for s, f in found.items()}
    predictors = {title(s, len(p.vocab)): p for s, p in loaded.items()}
    return predictors, None if chosen is None else Catalogue(chosen[0], loaded[list(found)[chosen[1]]], similar)


def load_predictors(model: Path,                # run folder, <model>.json or <model>.pkl
                    # auto (the model `predict` answers with), a model's name, or both stages
                    stage: str = 'auto',
                    trust_pickle: bool = False, # load .pkl files even when a weights-only form exists
                    device: str = 'auto',       # auto, cpu or cuda (`inference.resolve_device`)
                    engine: str = 'torch',      # torch, or onnx (ONNX Runtime on the run's exported graphs)
                    ) -> dict:
    "{title: predictor} for the models to show, in the run's order."
    return load_page(model, stage, trust_pickle, device, engine)[0]


def gallery(neighbours: list) -> list:
    """`Catalogue.neighbours` as `gr.Gallery` takes them: each image with its id, label and cosine,
    as predict prints them."""
    return [(n['file'], f"{n['id']} {n['label']} {n['score']:.2f}") for n in neighbours]


def pixels(items: list) -> list:
    """`gallery`'s files as RGB pixels, which Gradio serves from its own cache (see the module's docstring for why not
    the files); a photo gone since the start is the user's to fix, not a traceback."""
    out = []
    for file, caption in items:
        try: out.append((open_rgb(file), caption))
        except OSError as e:
            raise ValueError(f"The catalogue photo {file} cannot be read any more ({type(e).__name__}): restore it, or "
                             f"build the index again and restart the page.") from e
    return out


def classify(predictors: dict,            # {title: predictor}, as from `load_predictors`
             path,                        # image file (None: no image, so nothing to show)
             topk: int = 5,               # classes per stage
             catalogue: Catalogue = None, # with --similar: the gallery's index (`load_page`)
             ) -> list:
    """One {class: probability} per stage, best first, then one per other attribute of that stage's model ({value:
    probability} of its best value): `predict_paths`'s answer for this file, as `gr.Label` takes it (see `labels`); with
    a catalogue, last, its nearest products as `gallery` shows them."""
    if path is None: return [None] * (len(labels(predictors)) + (catalogue is not None))
    files, skipped = readable([path])
    if skipped: raise ValueError(f"Not a readable image ({skipped[0]['error']}).")
    out, near = [], None
    for predictor in predictors.values():
        if catalogue is not None and predictor is catalogue.model: result, near = catalogue.answer(files[0], topk)
        else: (result,) = answer_readable(predictor, files, topk)  # checked once above, for every stage
        zero_shot = set(predictor.zero_shot_classes)
        out.append({t['class'] + (ZERO_SHOT_MARK if t['class'] in zero_shot else ''): t['prob'] for t in result['top']})
        out += [{a['class']: a['prob']} for a in result.get('attributes', {}).values()]
    return out + ([gallery(near)] if catalogue is not None else [])


ZERO_SHOT_MARK = ' (zero-shot)'  # after a class answered from the ImageNet classifier: no training photo taught it


def labels(predictors: dict) -> list:
    "The page's outputs in `classify`'s order: each stage's title, then its other attributes' names."
    return [name for title, p in predictors.items() for name in (title, *(h for h in p.vocabs if h != LABEL))]


def import_gradio():
    "Gradio, imported with its usage analytics and the Hugging Face Hub switched off (the demo contacts nothing)."
    os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'
    os.environ['HF_HUB_OFFLINE'] = '1'
    import gradio as gr
    return gr


def build_app(predictors: dict,             # {title: predictor}, as from `load_predictors`
              topk: int = 5,                # classes shown per stage
              source: str = '',             # where the model came from, shown on the page
              # with --similar: a gallery of the nearest catalogue products under the labels
              catalogue: Catalogue = None,
              ):
    "The Gradio page (not launched): one image in, one `gr.Label` per stage out (and the similar products' gallery)."
    gr = import_gradio()

    def predict(path):
        try:
            out = classify(predictors, path, topk, catalogue)
            if catalogue is not None and out[-1] is not None: out[-1] = pixels(out[-1])
        except ValueError as e: raise gr.Error(str(e))
        return out[0] if len(out) == 1 else out

    outputs = [gr.Label(num_top_classes=topk, label=title) for title in labels(predictors)]
    if catalogue is not None:
        outputs.append(gr.Gallery(label=f'{catalogue.k} most alike catalogue products (id, label, cosine)',
                                  columns=min(catalogue.k, 5), object_fit='contain', height='auto', format='jpeg'))
    return gr.Interface(
        predict,
        inputs=gr.Image(type='filepath', image_mode=None, sources=['upload', 'clipboard'], label='Product photo'),
        outputs=outputs,
        live=True, flagging_mode='never', title='Fashion product classifier',
        description=f"Upload a product photo to see the top-{topk} article types and their calibrated probabilities"
                    + (f" from `{source}`" if source else "")
                    + f". Classes marked{ZERO_SHOT_MARK} had no training photo: "
                    f"they are answered from the starting network's ImageNet classifier.")


@call_parse
@command('app')
def main(model: Model,
         port: int = 7860,           # port to serve the page on
         stage: Annotated[str, {'help': f"which models to show: auto ({ANSWER_ORDER[0]} when the run has it, else "
                                        f"{FIRST}, as predict answers), both ({' and '.join(STAGES)} side by side) or "
                                        f"one of {models_help()} (default: auto)"}] = 'auto',
         host: str = '127.0.0.1',    # address to listen on (0.0.0.0 to let other machines in)
         trust_pickle: TrustPickle = DEFAULT.trust_pickle,
         device: Device = DEFAULT.device,
         engine: Engine = DEFAULT.engine,
         similar: int = 0,           # with --index: a gallery of the K catalogue products most alike the photo
         index: Annotated[str, {'help': "a catalogue index from `python -m fashion_fastai.index`, built with a shown "
                                        "model (the first shown that made it embeds the photo)"}] = None,
         closed_set: ClosedSet = DEFAULT.closed_set,
         ):
    "Serve a web page that shows the top-5 article types of an uploaded product photo."
    if not 0 < port < 65536: raise OptionError(f"--port must be a port number from 1 to 65535, got {port}.")
    check_model_options(engine=engine, device=device)
    predictors, catalogue = load_page(Path(model), stage, trust_pickle, device, engine, similar, index, closed_set)
    demo = build_app(predictors, source=model, catalogue=catalogue)
    try: demo.launch(server_name=host, server_port=port, share=False)
    except OSError as e:
        raise OptionError(f"cannot serve on {host}:{port} ({e}): pass another --port (is another program, or this "
                          f"page, already serving there?) or check --host.") from e
