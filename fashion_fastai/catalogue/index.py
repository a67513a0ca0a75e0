"""`python -m fashion_fastai.index MODEL FOLDER... --out catalogue.npz`: an embedding index of a catalogue's photos, for
`predict --similar K` (the K most alike catalogue products of a photo).

A photo's embedding is what a trained model of the run separates article types with: the input of its article-type
layer (`WeightsOnlyModel.embed`), L2-normalised, so that the dot product is the cosine.  The index keeps the vectors
(float16 on disk, float32 once loaded), each photo's id, file and label (the article type `styles.csv` gives it when the
folder is a Kaggle `images/` folder, else the model's answer, with which one it is), and the model they came from (its
file and the SHA-256 of its weights): an index searched with another model's embeddings would answer nonsense, so it is
refused by name.  Search is exact cosine, a matrix product in blocks (BENCHMARKS.md says up to what size it stays fast
here; beyond, an approximate index such as faiss takes over).
"""
from __future__ import annotations

import hashlib, json, tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from fastcore.script import call_parse

from fashion_fastai.core.atomic import atomic_path
from fashion_fastai.cli import command
from fashion_fastai.core.schema import LABEL, image_id
from fashion_fastai.data.styles import load_styles
from fashion_fastai.core.errors import DataError, ModelError, OptionError
from fashion_fastai.data.images import image_problem
from fashion_fastai.inference.load import load_model_file
from fashion_fastai.answering.parts import FILE as JOINED_FILE
from fashion_fastai.core.models import JOINED
from fashion_fastai.inference.joined import embedding_json
from fashion_fastai.inference.locate import expand_paths, file_form, find_model
from fashion_fastai.inference.options import (DEFAULT, Batch, ClosedSet, Device, Stage, WeightsModel,
                                              check_model_options)

FORMAT = 'fashion_fastai.index/1'
BLOCK = 65536  # catalogue rows per block of the search's matrix product: memory stays flat in the catalogue's size


def model_identity(json_path: Path) -> dict:
    """Which model made an embedding: its weights-only file and the SHA-256 of the weights it names (for a joined
    answer, those of the member whose embedding it gives)."""
    json_path = Path(json_path).resolve()
    if json_path.name == JOINED_FILE: json_path = embedding_json(json_path).resolve()
    weights = json_path.parent / json.loads(json_path.read_text())['weights']
    h = hashlib.sha256()
    with open(weights, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''): h.update(block)
    return dict(model=str(json_path), weights_sha256=h.hexdigest())


def weights_only(model: Path, stage: str = None) -> Path:
    """The weights-only JSON of the model asked for, or the run's joined answer whose members are: embeddings come from
    the PyTorch network itself."""
    path, form = find_model(Path(model), stage, trust_pickle=False)
    if form not in ('weights', JOINED):
        raise ModelError(f"{model}: an index needs the weights-only form (<model>.json + .pth) of a run's model, not "
                         f"the pickle {path.name}: pass the run folder or its <model>.json.")
    return path


@dataclass
class Index:
    "A catalogue's embeddings and what they belong to."
    vectors: np.ndarray   # [N, D] float16, L2-normalised
    ids: list
    files: list
    labels: list
    label_source: list    # per row: 'styles.csv' or 'model'
    model: dict           # `model_identity` of the model that embedded them

    def save(self, path: Path) -> None:
        meta = dict(format=FORMAT, model=self.model, ids=self.ids, files=self.files, labels=self.labels,
                    label_source=self.label_source)
        with atomic_path(Path(path)) as tmp, open(tmp, 'wb') as f:
            np.savez(f, vectors=self.vectors, meta=np.array(json.dumps(meta)))

    @classmethod
    def load(cls, path: Path, model: dict | list = None) -> 'Index':
        "An index file; with `model` (`model_identity`, or a list of them), refused unless it (one of them) made it."
        path = Path(path)
        if not path.is_file():
            raise OptionError(f"--index {path} not found: build it with `python -m fashion_fastai.index`.")
        try:
            with np.load(path, allow_pickle=False) as z: vectors, meta = z['vectors'], json.loads(str(z['meta']))
            assert meta.get('format') == FORMAT
        except Exception as e:
            raise OptionError(f"--index {path} is not an index written by `python -m fashion_fastai.index` "
                              f"({type(e).__name__}); build it again.") from e
        index = cls(vectors, meta['ids'], meta['files'], meta['labels'], meta['label_source'], meta['model'])
        models = [model] if isinstance(model, dict) else list(model or ())
        if models and not any(map(index.made_by, models)):
            raise OptionError(f"--index {path} was built with another model ({meta['model']['model']}), not "
                              f"{' or '.join(m['model'] for m in models)}: its embeddings do not compare; build the "
                              f"index with this model (`python -m fashion_fastai.index {models[0]['model']} FOLDER`).")
        return index

    def made_by(self, model: dict) -> bool:
        "Whether `model` (`model_identity`) made these embeddings: the weights decide, wherever the file now lies."
        return self.model['weights_sha256'] == model['weights_sha256']

    def float32(self) -> np.ndarray:
        "The vectors in float32, made once: numpy multiplies float16 slowly, and converting per query costs more."
        if getattr(self, '_float32', None) is None: self._float32 = self.vectors.astype(np.float32)
        return self._float32

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        "The `k` most alike rows of each query (exact cosine, best first): (scores [Q, k], rows [Q, k])."
        k = min(k, len(self.ids))
        q, v = np.asarray(queries, np.float32), self.float32()
        best_s, best_i = np.full((len(q), 0), -np.inf, np.float32), np.zeros((len(q), 0), np.int64)
        for start in range(0, len(self.ids), BLOCK):
            s = q @ v[start:start + BLOCK].T
            top = np.argpartition(-s, min(k, s.shape[1]) - 1, axis=1)[:, :k]
            best_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
            best_i = np.concatenate([best_i, top + start], 1)
            keep = np.argsort(-best_s, axis=1, kind='stable')[:, :k]
            best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
        return best_s, best_i

    def neighbours(self, queries, k: int) -> list:
        "Per query, its `k` nearest catalogue products as {id, label, score, file}."
        scores, rows = self.search(queries, k)
        return [[dict(id=self.ids[r], label=self.labels[r], score=round(float(s), 4), file=self.files[r])
                 for s, r in zip(ss, rr)] for ss, rr in zip(scores, rows)]


def similar_index(index: str, similar: int, found: list, engine: str, processes: int = 1) -> tuple[Index, int] | None:
    """The index `--similar` searches and which of the models `found` (`find_model`'s (file, form) of each, in the order
    the command shows them) embeds the photos for it: the first whose weights made the index, since only that model's
    embeddings compare with it.  Checked before any model is loaded or image read, so that `predict` and the web page
    refuse the same options with the same words; None without --similar."""
    if not similar and index is None: return None
    if similar < 1 or index is None:
        raise OptionError(f"--similar K needs K >= 1 and --index FILE (from `python -m fashion_fastai.index`); got "
                          f"--similar {similar}, --index {index}.")
    if engine != 'torch' or processes > 1 or any(form not in ('weights', JOINED) for _, form in found):
        raise OptionError("--similar embeds the photos with the weights-only PyTorch model: use it with --engine "
                          "torch, one process, and a run folder or <model>.json.")
    models = [model_identity(path) for path, _ in found]
    catalogue = Index.load(Path(index), models)
    return catalogue, next(i for i, m in enumerate(models) if catalogue.made_by(m))


def catalogue_labels(files: list) -> dict:
    "{file: article type} from the styles.csv beside a Kaggle `images/` folder, for the files that have a row there."
    out = {}
    for styles in {Path(f).parent.parent / 'styles.csv' for f in files}:
        if not styles.is_file(): continue
        rows, _ = load_styles(styles)
        by_id = dict(zip(rows['id'].astype(str), rows[LABEL]))
        out |= {str(f): by_id[image_id(f)] for f in files if Path(f).parent.parent / 'styles.csv' == styles
                and image_id(f) in by_id}
    return out


def model_labels(model, files: list, heads: dict, known: dict) -> list:
    """Each photo's label: `styles.csv`'s where it has one (`known`), else the article type `predict` answers for it
    (`Predictor.answered`, the zero-shot classes joined), which only the photos without a row need."""
    ask = [n for n, f in enumerate(files) if str(f) not in known]
    answered = model.answered({h: p[ask] for h, p in heads.items()}, [files[n] for n in ask])[0][LABEL] if ask else None
    best = iter(answered.argmax(1).tolist() if ask else ())
    return [known[str(f)] if str(f) in known else model.vocab[next(best)] for f in files]


def build(model_json: Path, paths, bs: int = 64, device: str = 'auto', log=print,
          closed_set: bool = False) -> tuple[Index, list]:
    "The index of the readable photos under `paths`, and the skipped ones with reasons."
    model = load_model_file(*file_form(Path(model_json)), device, closed_set=closed_set)  # answering: `model_labels`
    files, skipped, seen = [], [], {}
    for f in expand_paths(paths):
        why = image_problem(f) if f.exists() else 'file not found'
        if not why and image_id(f) in seen: why = f'duplicate id {image_id(f)}: {seen[image_id(f)]} has it'
        if why: skipped.append(dict(path=str(f), error=why)); continue
        seen[image_id(f)] = str(f); files.append(f)
    if not files: raise DataError(f"no readable photo under {', '.join(map(str, paths))} to index.")
    known, vectors, labels, chunk = catalogue_labels(files), [], [], 4096
    for i in range(0, len(files), chunk):
        emb, heads = model.embed(files[i:i + chunk], bs)
        vectors.append(emb.numpy().astype(np.float16))
        labels += model_labels(model, files[i:i + chunk], heads, known)
        log(f"index: {min(i + chunk, len(files))} of {len(files)} photos embedded")
    source = ['styles.csv' if str(f) in known else 'model' for f in files]
    return Index(np.concatenate(vectors), [image_id(f) for f in files], [str(f) for f in files], labels, source,
                 model_identity(model_json)), skipped


@call_parse
@command('index')
def main(model: WeightsModel,
         *paths: Annotated[str, {'nargs': '+'}],  # the catalogue: image folders (searched recursively) and/or files
         out: str = 'catalogue.npz', # the index file to write
         stage: Stage = DEFAULT.stage,
         bs: Batch = DEFAULT.bs,
         device: Device = DEFAULT.device,
         closed_set: ClosedSet = DEFAULT.closed_set,
         ):
    "Index a catalogue's photos by their embeddings, for `predict --similar K --index FILE`."
    check_model_options(paths, stage=stage, device=device, bs=bs)
    out = Path(out)
    if out.is_dir() or not out.parent.is_dir():
        raise OptionError(f"--out {out}: {'a folder' if out.is_dir() else 'its folder does not exist'}; give a file "
                          f"name in an existing folder.")
    try:  # the index is written beside it and renamed: the folder must take a new file, known before any photo is read
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f'.{out.name}.', suffix='.check'): pass
    except OSError as e:
        raise OptionError(f"--out {out}: cannot write in {out.parent} ({e.strerror or e}); choose another "
                          f"--out.") from e
    index, skipped = build(weights_only(Path(model), stage), paths, bs, device, closed_set=closed_set)
    index.save(out)
    for s in skipped: print(f"skipped {s['path']}: {s['error']}")
    print(f"index: {len(index.ids)} photos of {Path(index.model['model']).name} in {out} "
          f"({sum(s == 'styles.csv' for s in index.label_source)} labelled by styles.csv, the rest by the model)"
          + (f"; {len(skipped)} skipped" if skipped else ''))
