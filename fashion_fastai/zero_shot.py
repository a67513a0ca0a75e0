"""Scores for article types that have no training photo, from the starting network's own ImageNet classifier, and the
gate that joins them with a trained head into one probability.

The method is ConSE's (Norouzi et al., 2014) with a hand-written table in place of word embeddings: an unseen class
scores the ImageNet probability of the ImageNet classes its table row names.  The table, `tables/zero_shot_map.csv`,
was written from the article types' names and ImageNet's label names and glosses alone (timm's `ImageNetInfo`), before
any number was measured with it.  Of the 35 article types of the Kaggle data with no even-year photo, five have no row:
no ImageNet class fits their name (Beauty Accessory, Mens Grooming Kit, Nail Essentials, Nail Polish, Shoe Laces).  Rows
that name the same ImageNet classes (the lip products) tie: from a photo, the ImageNet classifier cannot tell them apart.

A user's map file (`--zero-shot-map`, the same columns) adds rows or replaces the table's, so that a catalogue's own new
category gets answers before it has photos.

The gate (`join`, `gate_threshold`): an image opens it when the ImageNet probability of every mapped class together is
at least a threshold; then that share of its probability goes to the zero-shot classes, in proportion to their scores,
and the rest to the trained classes.  The threshold is chosen on held-out images of trained classes, so that at most a
given share of them (1% by default) would be answered with a zero-shot class.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import DataError

TABLE = Path(__file__).parent / 'tables' / 'zero_shot_map.csv'
COLUMNS = ('articleType', 'imagenet')  # a map file's required columns; others (e.g. `why`) are for people


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
    raise ValueError(f"{label!r} is no ImageNet-1k class" + (f" (did you mean {', '.join(map(repr, near))}?)" if near else ''))


def read_map(path: Path) -> dict:
    """{article type: ImageNet indices} of a map file; a row that cannot be used is an error naming its line."""
    path = Path(path)
    if not path.is_file(): raise DataError(f"--zero-shot-map {path}: no such file.")
    with open(path, newline='', encoding='utf-8-sig') as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise DataError(f"{path}: no column {', '.join(missing)}; a zero-shot map has the columns "
                            f"{','.join(COLUMNS)} (ImageNet classes separated by ';').")
        rows = {}
        for line, row in enumerate(reader, start=2):
            name, labels = (row['articleType'] or '').strip(), [l for l in (row['imagenet'] or '').split(';') if l.strip()]
            if not name or not labels:
                raise DataError(f"{path}, line {line}: every row needs an article type and at least one ImageNet class.")
            if name in rows: raise DataError(f"{path}, line {line}: {name!r} has a row already.")
            try: rows[name] = tuple(dict.fromkeys(imagenet_index(l) for l in labels))
            except ValueError as e: raise DataError(f"{path}, line {line} ({name}): {e}.") from None
    return rows


def load_map(user_map: Path = None) -> dict:
    "The package's table, with a user's map file's rows added or replacing the table's."
    return {**read_map(TABLE), **(read_map(user_map) if user_map else {})}


@dataclass(frozen=True)
class ZeroShotHead:
    "The zero-shot classes of one model, and the matrix that scores them from ImageNet probabilities."
    classes: tuple          # article types with no training photo that the map has a row for, in the model's order
    weights: np.ndarray     # [1000, len(classes)]: 1 where a class's row names that ImageNet class
    mapped: np.ndarray      # [1000] bool: ImageNet classes some row names (their total is the gate's evidence)

    @classmethod
    def of(cls, unseen: list, zmap: dict) -> 'ZeroShotHead':
        classes = tuple(c for c in unseen if c in zmap)
        weights = np.zeros((1000, len(classes)), np.float32)
        for j, c in enumerate(classes): weights[list(zmap[c]), j] = 1
        return cls(classes, weights, weights.any(1))

    def scores(self, imagenet_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        "(each zero-shot class's ImageNet probability [N, U], the mapped classes' total [N]) of ImageNet probabilities."
        p = np.asarray(imagenet_probs, np.float64)
        return p @ self.weights, p[:, self.mapped].sum(1)


def join(trained: np.ndarray, scores: np.ndarray, evidence: np.ndarray, threshold: float) -> np.ndarray:
    """One probability over the trained classes then the zero-shot ones [N, K + U]: an image whose `evidence` reaches
    `threshold` gives that share to the zero-shot classes, split in proportion to their `scores`; any other keeps the
    trained head's probabilities."""
    trained, scores = np.asarray(trained, np.float64), np.asarray(scores, np.float64)
    share = np.where(np.asarray(evidence) >= threshold, np.asarray(evidence, np.float64), 0.)[:, None]
    total = scores.sum(1, keepdims=True)
    split = np.divide(scores, total, out=np.zeros_like(scores), where=total > 0)
    share = np.where(total > 0, share, 0.)
    return np.concatenate([trained * (1 - share), split * share], 1)


def gate_threshold(trained: np.ndarray, scores: np.ndarray, evidence: np.ndarray, max_routed: float = 0.01) -> float:
    """The lowest threshold at which at most `max_routed` of these images (held out, all of trained classes) would be
    answered with a zero-shot class.  Exact: an image is routed when the gate is open and its best joined class is a
    zero-shot one, and whether the latter holds does not depend on the threshold."""
    evidence = np.asarray(evidence, np.float64)
    open_joined = join(trained, scores, evidence, 0.)
    routed_if_open = open_joined.argmax(1) >= np.asarray(trained).shape[1]
    allowed = int(np.floor(max_routed * len(evidence)))
    candidates = np.sort(evidence[routed_if_open])[::-1]
    if len(candidates) <= allowed: return 0.
    return float(np.nextafter(candidates[allowed], np.inf))  # above the first image that would be one too many
