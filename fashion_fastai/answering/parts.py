"""The run's answer for any photo from its experts: p(class) = p(part) x p(class | part), the second factor the part's
stage as it answers (calibrated, with its zero-shot classes), the first a part gate, then one temperature.

Each stage answers its own part best (it trained on nothing else), while a model over every class trains on skewed
counts from a body that has just spent its epochs on one part.  The gate says which part a photo belongs to:

- `all_parts`: the all-classes model's probabilities summed over each part's classes;
- `stages`: the stages' own evidence, each stage's best probability against the other's (no other network).

Both are Platt-scaled (a scale and a bias on the gate's log-odds, fitted on the holdout's part labels), which also
corrects the gate for the parts' prior; the joined answer then gets a temperature of its own, fitted on the holdout
too, one set per way of answering (closed-set, with zero-shot).  `evaluation/join.py` measures each gate against the
all-classes model alone on the holdout and keeps the best; what it kept is recorded here, in `joined.json`, which
every way of answering reads.  Numpy and the temperature's arithmetic only: nothing here imports training code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fashion_fastai.answering.temperature import fit_temperature, temper
from fashion_fastai.core.errors import ModelError
from fashion_fastai.core.models import ALL, JOINED, PARTS

GATES = ('all_parts', 'stages')  # the part gates `evaluation/join.py` measures (beside the all-classes model alone)
WAYS = ('zero_shot', 'closed_set')  # the two ways of answering, each with its own fit
FORMAT = 'fashion_fastai.joined/1'
FILE = f'{JOINED}.json'


def gate_evidence(gate: str, members: dict, index: dict) -> np.ndarray:
    """The gate's raw p(top part) [N] from the members' answered probabilities ({model name: [N, its classes]});
    `index` maps each part to its classes' columns in the gate model's vocab (`all_parts`)."""
    if gate == 'all_parts':
        p = np.asarray(members[ALL], np.float64)
        top, rare = p[:, index['top']].sum(1), p[:, index['rare']].sum(1)
        return top / np.clip(top + rare, 1e-300, None)
    if gate == 'stages':
        best = {part: np.asarray(members[name], np.float64).max(1) for part, name in index['stages'].items()}
        return best['top'] / np.clip(best['top'] + best['rare'], 1e-300, None)
    raise ValueError(f"gate {gate!r}: expected one of {', '.join(GATES)}")


def _logit(p: np.ndarray) -> torch.Tensor:
    p = torch.as_tensor(np.asarray(p), dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    return p.log() - (-p).log1p()


def fit_platt(evidence: np.ndarray, is_top: np.ndarray) -> tuple[float, float]:
    """(scale, bias) on the gate's log-odds that minimise the log-loss of the part labels (Platt, 1999): convex, solved
    by L-BFGS.  The bias is the part prior's correction, the scale the gate's own temperature."""
    z, y = _logit(evidence), torch.as_tensor(np.asarray(is_top), dtype=torch.float64)
    params = torch.tensor([1., 0.], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], lr=0.5, max_iter=200, line_search_fn='strong_wolfe')

    def loss():
        opt.zero_grad()
        out = F.binary_cross_entropy_with_logits(params[0] * z + params[1], y)
        out.backward()
        return out
    opt.step(loss)
    a, b = params.detach().tolist()
    return float(a), float(b)


def platt(evidence: np.ndarray, scale: float, bias: float) -> np.ndarray:
    return torch.sigmoid(scale * _logit(evidence) + bias).numpy()


@dataclass
class PartAnswer:
    """The joined answer of a run: each part's stage weighed by the gate, over every class (`vocab`, the all-classes
    model's order).  `fits[way]`: the gate's Platt scale and bias and the joined temperature, fitted on the holdout."""
    vocab: tuple                 # every class, in the all-classes vocab's order
    stages: dict                 # {part: (model name, its vocab)}
    gate: str                    # one of GATES
    fits: dict = field(default_factory=dict)  # {way: {'scale', 'bias', 'temperature'}}
    attributes_from: str = None  # the model whose other attribute heads answer (the last of the run among the members)
    holdout: dict = field(default_factory=dict)  # what the choice was made on: each candidate's holdout numbers
    attributes: dict = field(default_factory=dict)  # as `Answering.attributes`: those answered from the article type
    review: dict = field(default_factory=dict)      # {way: the review threshold fitted on the holdout}

    @property
    def members(self) -> tuple:
        "The models this answer runs, in the run's order, the gate's model last if it has one."
        names = [n for n, _ in self.stages.values()]
        return tuple(names + ([ALL] if self.gate == 'all_parts' and ALL not in names else []))

    def index(self) -> dict:
        "Each part's columns in `vocab`, and the stages by part, for `gate_evidence`."
        where = {c: i for i, c in enumerate(self.vocab)}
        return {**{part: np.array([where[c] for c in v], int) for part, (_, v) in self.stages.items()},
                'stages': {part: n for part, (n, _) in self.stages.items()}}

    def untempered(self, members: dict, way: str) -> np.ndarray:
        "p(part) x p(class | part) [N, len(vocab)] before the joined temperature."
        index, f = self.index(), self.fits[way]
        g = platt(gate_evidence(self.gate, members, index), f['scale'], f['bias'])
        out = np.zeros((len(g), len(self.vocab)))
        for part, weight in (('top', g), ('rare', 1 - g)):
            name, _ = self.stages[part]
            out[:, index[part]] = weight[:, None] * np.asarray(members[name], np.float64)
        return out

    def apply(self, members: dict, closed_set: bool = False) -> np.ndarray:
        """The answer [N, len(vocab)] from the members' answered probabilities ({model: [N, its classes]}, each as
        `Answering.apply` gives it, closed-set or not as `closed_set` says)."""
        way = WAYS[1] if closed_set else WAYS[0]
        return temper(self.untempered(members, way), self.fits[way]['temperature'])

    def fitted(self, members: dict, parts: np.ndarray, targets: np.ndarray, way: str) -> 'PartAnswer':
        """This answer with `way`'s gate and temperature fitted on holdout photos: `parts` their part ('top' or
        'rare'), `targets` their class indices in `vocab`.  The temperature leaves out photos the answer cannot get
        right (a class with neither training photos nor a zero-shot row has probability 0 there)."""
        scale, bias = fit_platt(gate_evidence(self.gate, members, self.index()), np.asarray(parts) == 'top')
        fits = {**self.fits, way: dict(scale=scale, bias=bias, temperature=1.)}
        joined = PartAnswer(self.vocab, self.stages, self.gate, fits).untempered(members, way)
        answerable = joined[np.arange(len(joined)), np.asarray(targets)] > 0
        fits[way]['temperature'] = fit_temperature(joined[answerable], np.asarray(targets)[answerable])
        return PartAnswer(self.vocab, self.stages, self.gate, fits, self.attributes_from, self.holdout,
                          self.attributes, self.review)

    def to_dict(self) -> dict:
        return dict(format=FORMAT, vocab=list(self.vocab), gate=self.gate,
                    stages={p: dict(model=n, vocab=list(v)) for p, (n, v) in self.stages.items()},
                    fits=self.fits, attributes_from=self.attributes_from, holdout=self.holdout,
                    attributes=self.attributes, review=self.review)

    @classmethod
    def from_dict(cls, d: dict) -> 'PartAnswer':
        return cls(tuple(d['vocab']), {p: (s['model'], tuple(s['vocab'])) for p, s in d['stages'].items()},
                   d['gate'], d['fits'], d.get('attributes_from'), d.get('holdout', {}), d.get('attributes', {}),
                   d.get('review', {}))

    def save(self, run_dir: Path) -> Path:
        from fashion_fastai.core.atomic import atomic_write_text
        path = Path(run_dir) / FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path


def read_part_answer(path: Path) -> PartAnswer:
    "A run's `joined.json`, checked to be one before anything is loaded for it."
    path = Path(path)
    try: d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path} is not a readable joined answer ({e}): copy it again from the run folder, or pass "
                         f"--stage with one of the run's models.") from e
    if not isinstance(d, dict) or d.get('format') != FORMAT:
        raise ModelError(f"{path} is not a joined answer of this package version (no \"format\": \"{FORMAT}\"): copy "
                         f"it again from the run folder, or pass --stage with one of the run's models.")
    if set(d.get('stages', {})) != set(PARTS):
        raise ModelError(f"{path} does not name a stage for each part ({', '.join(PARTS)}): it is damaged.")
    return PartAnswer.from_dict(d)
