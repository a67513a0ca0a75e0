"""Scores for article types that have no training photo, from the starting network's own ImageNet classifier, and the
gate that joins them with a trained head into one probability.

The method is ConSE's (Norouzi et al., 2014) with a hand-written table in place of word embeddings: an unseen class
scores the ImageNet probability of the ImageNet classes its table row names. The table, `tables/zero_shot_map.csv`, was
written from the article types' names and ImageNet's label names and glosses alone (timm's `ImageNetInfo`), before any
number was measured with it; so were its masterCategory and subCategory columns (categories.py), each chosen by the
article type's name among the data set's masterCategory and subCategory names. Of the 35 article types of the Kaggle
data with no even-year photo, five have no row: no ImageNet class fits their name (Beauty Accessory, Mens Grooming Kit,
Nail Essentials, Nail Polish, Shoe Laces). Rows that name the same ImageNet classes (the lip products) tie: from a
photo, the ImageNet classifier cannot tell them apart.

A user's map file (`--zero-shot-map`, the same columns) adds rows or replaces the table's, so that a catalogue's own new
category gets answers before it has photos.

The gate (`join`, `fit_boost`): the zero-shot classes together get the ImageNet probability of every mapped class, its
odds multiplied by one number, the boost (calibrated stacking, Chao et al., 2016), split in proportion to their scores;
the trained classes share the rest. The boost is chosen on held-out images of trained classes: the largest at which at
most a given share of them (1% by default) would be answered with a zero-shot class, and no one class would lose more
than a given share of its own (1 point by default). Without it (a boost of 1, plain ConSE) a head trained never to say
"none of mine" outvotes the ImageNet evidence nearly always.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fashion_fastai.core.errors import DataError

TABLE = Path(__file__).parent / 'tables' / 'zero_shot_map.csv'
COLUMNS = ('articleType', 'imagenet')  # a map file's required columns; masterCategory and subCategory are optional,
# others (e.g. `why`) are for people
MAIN = 'main'       # an optional column: the ImageNet classes (of those named) whose main answer the row is
SECONDARY = 0.5     # the weight of a class a row names but is not the main answer for: two of them match one main
MAX_ROUTED = 0.01   # the share of holdout photos (all of trained classes) the gate may answer with a zero-shot class
MAX_CLASS_LOSS = 0.01  # the share of one trained class's holdout photos the gate may answer with a zero-shot class


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[dict, dict]:
    "({WordNet synset id: index}, {first label name: index, or None when two classes share it}) of ImageNet-1k."
    from timm.data import ImageNetInfo
    info, by_name = ImageNetInfo(), {}
    for i in range(1000):
        name = info.index_to_description(i).split(',')[0].strip()
        by_name[name] = None if name in by_name else i
    return {info.index_to_label_name(i): i for i in range(1000)}, by_name


def imagenet_index(label: str) -> int:
    "The ImageNet-1k index of a synset id (`n03676483`) or a class's first label name (`lipstick`); ValueError if none."
    by_id, by_name = imagenet_labels()
    label = label.strip()
    if label in by_id: return by_id[label]
    if by_name.get(label) is not None: return by_name[label]
    if label in by_name: raise ValueError(f"{label!r} names two ImageNet classes: give its synset id (nXXXXXXXX)")
    near = sorted(n for n in by_name if label.lower() in n.lower() or n.lower() in label.lower())[:5]
    raise ValueError(f"{label!r} is no ImageNet-1k class"
                     + (f" (did you mean {', '.join(map(repr, near))}?)" if near else ''))


def _labels(cell: str) -> list:
    return [l.strip() for l in (cell or '').split(';') if l.strip()]


def read_map(path: Path, known: set = None) -> dict:
    """{article type: {ImageNet index: weight}} of a map file: 1 for the classes in its `main` column, `SECONDARY` for
    the others it names; a row that cannot be used is an error naming its line, as is, given the `known` article types
    (the data's), a row for another one (a typo would otherwise answer nothing, silently)."""
    path = Path(path)
    if not path.is_file(): raise DataError(f"--zero-shot-map {path}: no such file.")
    try: path.read_text(encoding='utf-8-sig')  # a small table: decoding it whole first gives one line, not a traceback
    except UnicodeDecodeError:
        raise DataError(f"--zero-shot-map {path} is not a CSV (not UTF-8 text): give the table as a CSV file of rows "
                        f"{','.join(COLUMNS)}.") from None
    with open(path, newline='', encoding='utf-8-sig') as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise DataError(f"{path}: no column {', '.join(missing)}; a zero-shot map has the columns "
                            f"{','.join(COLUMNS)} (ImageNet classes separated by ';'), and optionally {MAIN}.")
        rows, main_of = {}, {}
        for line, row in enumerate(reader, start=2):
            name, labels, main = (row['articleType'] or '').strip(), _labels(row['imagenet']), _labels(row.get(MAIN))
            if not name or not labels:
                raise DataError(f"{path}, line {line}: every row needs an article type and at least one ImageNet "
                                "class.")
            if name in rows: raise DataError(f"{path}, line {line}: {name!r} has a row already.")
            if known is not None and name not in known:
                near = sorted(k for k in known if name.lower() in k.lower() or k.lower() in name.lower())[:5]
                raise DataError(f"{path}, line {line}: {name!r} is no article type of this data set"
                                + (f" (did you mean {', '.join(map(repr, near))}?)" if near else '')
                                + ": a row answers an article type of styles.csv that has no training photo.")
            try: named, mains = [imagenet_index(l) for l in labels], [imagenet_index(l) for l in main]
            except ValueError as e: raise DataError(f"{path}, line {line} ({name}): {e}.") from None
            for label, i in zip(main, mains):
                if i not in named: raise DataError(f"{path}, line {line} ({name}): its {MAIN} class {label!r} is not "
                                                   f"among its {COLUMNS[1]} classes.")
                if i in main_of: raise DataError(f"{path}, line {line} ({name}): {label!r} is the {MAIN} class of "
                                                 f"{main_of[i]!r} already; an ImageNet class is the main one of one "
                                                 "row.")
                main_of[i] = name
            rows[name] = {i: 1. if i in mains else SECONDARY for i in named}
    return rows


def read_categories(path: Path) -> dict:
    """{article type: {attribute: value}} of a map file's optional `categories.DECIDED` columns (the masterCategory and
    subCategory a row's article type belongs to, written from its name), for the rows that give them."""
    from fashion_fastai.answering.categories import DECIDED
    with open(path, newline='', encoding='utf-8-sig') as f:
        return {row['articleType'].strip(): {a: row[a].strip() for a in DECIDED if (row.get(a) or '').strip()}
                for row in csv.DictReader(f) if (row.get('articleType') or '').strip()}


def load_categories(user_map: Path = None) -> dict:
    "The categories of the package table's rows and of a user's map file (`load_map` checked it), the user's first."
    return {**read_categories(TABLE), **(read_categories(user_map) if user_map else {})}


def load_map(user_map: Path = None, known: set = None) -> dict:
    """The package's table, with a user's map file's rows added or replacing the table's (each naming one of the `known`
    article types, when given); a main class a user's row claims counts as secondary in the table's rows."""
    table, user = read_map(TABLE), read_map(user_map, known) if user_map else {}
    claimed = {i for row in user.values() for i, w in row.items() if w == 1.}
    table = {n: {i: SECONDARY if i in claimed else w for i, w in row.items()}
             for n, row in table.items() if n not in user}
    return {**table, **user}


@dataclass(frozen=True)
class ZeroShotHead:
    "The zero-shot classes of one model, and the matrix that scores them from ImageNet probabilities."
    classes: tuple          # article types with no training photo that the map has a row for, in the model's order
    # [1000, len(classes)]: each row's weight on the ImageNet classes it names (1 main, else SECONDARY)
    weights: np.ndarray
    mapped: np.ndarray      # [1000] bool: ImageNet classes some row names (their total is the gate's evidence)

    @classmethod
    def of(cls, unseen: list, zmap: dict) -> 'ZeroShotHead':
        classes = tuple(c for c in unseen if c in zmap)
        weights = np.zeros((1000, len(classes)), np.float32)
        for j, c in enumerate(classes):
            for i, w in zmap[c].items(): weights[i, j] = w
        return cls(classes, weights, weights.any(1))

    def scores(self, imagenet_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        "(each zero-shot class's weighted ImageNet probability [N, U], the mapped classes' total [N])."
        p = np.asarray(imagenet_probs, np.float64)
        return p @ self.weights, p[:, self.mapped].sum(1)


def join(trained: np.ndarray, scores: np.ndarray, evidence: np.ndarray, boost: float) -> np.ndarray:
    """One probability over the trained classes then the zero-shot ones [N, K + U].  The zero-shot classes together get
    the `evidence` (ImageNet probability of every mapped class) with its odds multiplied by `boost`, split in proportion
    to their `scores`; the trained head's probabilities share the rest.  `boost` is calibrated stacking's one parameter
    (Chao et al., 2016): how much the unseen side is favoured against a head that has never had to say "none of
    mine"."""
    trained, scores = np.asarray(trained, np.float64), np.asarray(scores, np.float64)
    e = np.clip(np.asarray(evidence, np.float64), 0., 1.)[:, None]
    total = scores.sum(1, keepdims=True)
    split = np.divide(scores, total, out=np.zeros_like(scores), where=total > 0)
    odds = boost * e
    share = np.divide(odds, odds + 1 - e, out=np.zeros_like(e), where=(odds + 1 - e) > 0)
    share = np.where(total > 0, share, 0.)
    return np.concatenate([trained * (1 - share), split * share], 1)


def fit_boost(trained: np.ndarray, scores: np.ndarray, evidence: np.ndarray, max_routed: float = MAX_ROUTED,
              classes: np.ndarray = None, max_class_loss: float = MAX_CLASS_LOSS) -> float:
    """The largest boost at which at most `max_routed` of these images (held out, all of trained classes) are answered
    with a zero-shot class, and, given their `classes`, no class loses more than `max_class_loss` of its own images:
    a bound on the average alone lets one class lose a third of its photos.  Exact: an image is routed once the boosted
    odds of the evidence pass the ratio of its best trained probability to its best zero-shot share, so each image has
    its own critical boost, and the answer is just below the first one that would break a bound."""
    trained, scores = np.asarray(trained, np.float64), np.asarray(scores, np.float64)
    e = np.clip(np.asarray(evidence, np.float64), 0., 1.)
    total = scores.sum(1)
    best_share = np.divide(scores.max(1, initial=0.), total, out=np.zeros_like(total), where=total > 0)
    with np.errstate(divide='ignore', invalid='ignore'):
        critical = np.where((e > 0) & (best_share > 0), trained.max(1) * (1 - e) / (e * best_share), np.inf)
    names, of = np.unique(np.zeros(len(e), int) if classes is None else np.asarray(classes), return_inverse=True)
    allowed = (np.full(len(names), np.inf) if classes is None
               else np.floor(max_class_loss * np.bincount(of, minlength=len(names)) + 1e-9))
    allowed_total, taken, lost = int(np.floor(max_routed * len(e) + 1e-9)), 0, np.zeros(len(names))
    for i in np.argsort(critical, kind='stable'):
        if not np.isfinite(critical[i]): break
        if taken + 1 > allowed_total or lost[of[i]] + 1 > allowed[of[i]]:
            return float(min(critical[i] * (1 - 1e-9), MAX_BOOST))  # below the image that would break a bound
        taken, lost[of[i]] = taken + 1, lost[of[i]] + 1
    return MAX_BOOST


MAX_BOOST = 1e12  # a boost past any holdout image's critical one: the gate is as open as it can be


@dataclass(frozen=True)
class ZeroShotPath:
    """A model's zero-shot answers: its classes that had no training photo and have a map row, scored from ImageNet
    probabilities and joined with the trained head at the boost fitted on its holdout.  What a model's JSON records
    (`to_dict`), so that predict joins exactly as evaluation did."""
    vocab: tuple           # the model's classes, in its output order
    untrained: tuple       # those with no training photo: the trained head's outputs for them are never answered
    head: ZeroShotHead     # those of them with a map row
    boost: float = 1.

    @classmethod
    def of(cls, vocab, untrained, zmap: dict, boost: float = 1.) -> 'ZeroShotPath':
        untrained = tuple(c for c in vocab if c in set(untrained))
        return cls(tuple(vocab), untrained, ZeroShotHead.of(list(untrained), zmap), boost)

    @property
    def zero_shot_index(self) -> np.ndarray: return np.array([self.vocab.index(c) for c in self.head.classes], int)

    @property
    def trained_index(self) -> np.ndarray:
        return np.array([i for i, c in enumerate(self.vocab) if c not in set(self.untrained)], int)

    def parts(self, probs: np.ndarray, imagenet_probs: np.ndarray):
        "(trained head renormalised over its trained classes [N, K], zero-shot scores [N, U], evidence [N])."
        t = np.asarray(probs, np.float64)[:, self.trained_index]
        t = t / np.clip(t.sum(1, keepdims=True), 1e-300, None)
        return (t, *self.head.scores(imagenet_probs))

    def joined(self, probs: np.ndarray, imagenet_probs: np.ndarray) -> np.ndarray:
        """The trained head's `probs` [N, len(vocab)] joined with the zero-shot scores, in the vocab's order [N,
        len(vocab)]."""
        small = join(*self.parts(probs, imagenet_probs), self.boost)
        out = np.zeros((len(small), len(self.vocab)))
        k = len(self.trained_index)
        out[:, self.trained_index], out[:, self.zero_shot_index] = small[:, :k], small[:, k:]
        return out

    def fitted(self, probs: np.ndarray, imagenet_probs: np.ndarray, max_routed: float = MAX_ROUTED,
               targets: np.ndarray = None) -> 'ZeroShotPath':
        """This path with the boost `fit_boost` chooses on held-out images of trained classes.  `targets` (class
        indices): each class's bound is kept too, and the images of classes without a training photo are left out first
        (a holdout of whole years can hold such images, which a zero-shot answer gets right, not wrong)."""
        classes = None
        if targets is not None:
            keep = self.of_trained(targets)
            probs, imagenet_probs, classes = (np.asarray(probs)[keep], np.asarray(imagenet_probs)[keep],
                                              np.asarray(targets)[keep])
        return ZeroShotPath(self.vocab, self.untrained, self.head,
                            fit_boost(*self.parts(probs, imagenet_probs), max_routed, classes))

    def of_trained(self, targets) -> np.ndarray:
        "Which images (by class index) are of a class with training photos: those the gate's bound counts."
        return np.isin(np.asarray(targets), self.trained_index)

    def answerable(self, targets) -> np.ndarray:
        """Which images (by class index) the joined probabilities can get right: of a trained class or of a zero-shot
        one. A class with neither (no training photo, no map row) has probability 0 there, which only an infinite
        temperature explains, so the joined temperature is fitted without its images (a holdout of whole years can hold
        some)."""
        return np.isin(np.asarray(targets), np.concatenate([self.trained_index, self.zero_shot_index]))

    def routed(self, joined: np.ndarray) -> np.ndarray:
        "Which images the joined probabilities answer with a zero-shot class."
        return np.isin(np.asarray(joined).argmax(1), self.zero_shot_index)

    def to_dict(self) -> dict:
        w = self.head.weights
        return dict(untrained=list(self.untrained), classes=list(self.head.classes),
                    imagenet=[{str(i): float(w[i, j]) for i in np.flatnonzero(w[:, j])}
                              for j in range(len(self.head.classes))],
                    boost=self.boost)

    @classmethod
    def from_dict(cls, vocab, d: dict) -> 'ZeroShotPath':
        rows = {c: {int(i): w for i, w in row.items()} for c, row in zip(d['classes'], d['imagenet'])}
        return cls.of(vocab, d['untrained'], rows, d['boost'])
