"""The run's answer for any photo from its experts: p(class) = p(part) x p(class | part), the second factor the part's
stage as it answers (calibrated, with its zero-shot classes), the first a part gate, then one temperature.

Each stage answers its own part best (it trained on nothing else), while a model over every class trains on skewed
counts from a body that has just spent its epochs on one part.  The gate says which part a photo belongs to:

- `all_parts`: the all-classes model's probabilities summed over each part's classes;
- `stages`: the stages' own evidence, each stage's best probability against the other's (no other network);
- `all_parts_imagenet`: the part sums' log-odds beside the frozen ImageNet network's log-probabilities (the network
  the zero-shot classes already run, imagenet_classifier.py), weighed by a logistic regression.  The run's models were
  all fine-tuned on the fashion photos, the ImageNet network never was: what it sees in a photo (a sandal, a lipstick,
  a jersey) is evidence of the part that their bodies, trained to tell article types apart within a part, need not
  keep.

The first two are Platt-scaled (a scale and a bias on the gate's log-odds, fitted on the holdout's part labels), which
also corrects the gate for the parts' prior; the third's regression is fitted on the holdout too, its L2 strength
chosen there by cross-validation (scikit-learn, which fastai brings).  The joined answer then gets a temperature of its
own, fitted on the holdout too, one set per way of answering (closed-set, with zero-shot); with the regression's
thousand weights, on its cross-fitted answers (each photo's gate from a fit without it), since its answers on the
photos it was fitted on are surer than on new ones.  `evaluation/join.py` measures each gate against the
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

GATES = ('all_parts', 'stages', 'all_parts_imagenet')  # the part gates `evaluation/join.py` measures (beside the
# all-classes model alone)
IMAGENET_GATE = GATES[2]  # the gate that also reads the frozen ImageNet network's probabilities
GATE_CS = (.003, .01, .03, .1, .3)  # the regression's inverse L2 strengths, on standardised inputs, the holdout chooses
FOLDS = 5                 # of the holdout, for that choice and the cross-fitted answers
FLOOR = 1e-8              # ImageNet probabilities are clipped here before their log, so that the gate stays finite
WAYS = ('zero_shot', 'closed_set')  # the two ways of answering, each with its own fit
FORMAT = 'fashion_fastai.joined/1'
FILE = f'{JOINED}.json'


def gate_evidence(gate: str, members: dict, index: dict) -> np.ndarray:
    """The gate's raw p(top part) [N] from the members' answered probabilities ({model name: [N, its classes]});
    `index` maps each part to its classes' columns in the gate model's vocab (`all_parts`, and `IMAGENET_GATE` before
    its ImageNet evidence)."""
    if gate in ('all_parts', IMAGENET_GATE):
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


def needs_imagenet(gate: str) -> bool: return gate == IMAGENET_GATE


def imagenet_log(imagenet) -> np.ndarray:
    return np.log(np.clip(np.asarray(imagenet, np.float64), FLOOR, None))


def can_cross_fit(parts) -> bool:
    "Whether the holdout has `FOLDS` photos of each part, as the regression's cross-validation needs."
    parts = np.asarray(parts)
    return all((parts == p).sum() >= FOLDS for p in PARTS)


def fit_imagenet_gate(evidence: np.ndarray, imagenet: np.ndarray, is_top: np.ndarray, seed: int = 0) -> tuple:
    """(the gate's fit: `scale` and `bias` on the part sums' log-odds, `imagenet` a weight per ImageNet class on its
    log-probability, and the `C` chosen; each holdout photo's p(top part) from the fit on the other folds).  Each C of
    `GATE_CS` is cross-fitted on the holdout's folds and the one of least log-loss kept.  The regression runs on
    standardised inputs, so that one L2 strength suits them all, and its weights are then put back on the raw log-odds
    and log-probabilities: the gate at inference is one dot product."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    x = np.concatenate([_logit(evidence).numpy()[:, None], imagenet_log(imagenet)], 1)
    mean, std = x.mean(0), x.std(0)
    std[std == 0] = 1.
    x, is_top = (x - mean) / std, np.asarray(is_top, bool)
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    crossed = {c: cross_val_predict(LogisticRegression(C=c, max_iter=5000), x, is_top, cv=folds,
                                    method='predict_proba')[:, 1] for c in GATE_CS}
    c = min(GATE_CS, key=lambda c: log_loss(is_top, crossed[c], labels=[False, True]))
    final = LogisticRegression(C=c, max_iter=5000).fit(x, is_top)
    weights = final.coef_[0] / std
    return dict(scale=float(weights[0]), bias=float(final.intercept_[0] - (weights * mean).sum()),
                imagenet=weights[1:].tolist(), C=c), crossed[c]


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
    # {way: the holdout's answers, cross-fitted}: kept by `fitted` for `IMAGENET_GATE`, never saved
    on_holdout: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def members(self) -> tuple:
        "The models this answer runs, in the run's order, the gate's model last if it has one."
        names = [n for n, _ in self.stages.values()]
        return tuple(names + ([ALL] if self.gate in ('all_parts', IMAGENET_GATE) and ALL not in names else []))

    def index(self) -> dict:
        "Each part's columns in `vocab`, and the stages by part, for `gate_evidence`."
        where = {c: i for i, c in enumerate(self.vocab)}
        return {**{part: np.array([where[c] for c in v], int) for part, (_, v) in self.stages.items()},
                'stages': {part: n for part, (n, _) in self.stages.items()}}

    @property
    def needs_imagenet(self) -> bool: return needs_imagenet(self.gate)

    def part_probability(self, members: dict, way: str, imagenet=None) -> np.ndarray:
        "p(top part) [N], the gate as `way` fitted it; `imagenet`: the frozen network's [N, 1000] (`IMAGENET_GATE`)."
        f = self.fits[way]
        z = f['scale'] * _logit(gate_evidence(self.gate, members, self.index())) + f['bias']
        if 'imagenet' in f:
            if imagenet is None:
                raise ValueError(f"the {self.gate} gate needs the frozen ImageNet network's probabilities")
            z = z + torch.from_numpy(imagenet_log(imagenet)) @ torch.tensor(f['imagenet'], dtype=torch.float64)
        return torch.sigmoid(z).numpy()

    def joined(self, g: np.ndarray, members: dict) -> np.ndarray:
        "p(part) x p(class | part) [N, len(vocab)] for the gate's p(top part) `g`."
        index, out = self.index(), np.zeros((len(g), len(self.vocab)))
        for part, weight in (('top', g), ('rare', 1 - g)):
            name, _ = self.stages[part]
            out[:, index[part]] = weight[:, None] * np.asarray(members[name], np.float64)
        return out

    def untempered(self, members: dict, way: str, imagenet=None) -> np.ndarray:
        "p(part) x p(class | part) [N, len(vocab)] before the joined temperature."
        return self.joined(self.part_probability(members, way, imagenet), members)

    def apply(self, members: dict, closed_set: bool = False, imagenet=None) -> np.ndarray:
        """The answer [N, len(vocab)] from the members' answered probabilities ({model: [N, its classes]}, each as
        `Answering.apply` gives it, closed-set or not as `closed_set` says); `imagenet` as `part_probability`."""
        way = WAYS[1] if closed_set else WAYS[0]
        return temper(self.untempered(members, way, imagenet), self.fits[way]['temperature'])

    def fitted(self, members: dict, parts: np.ndarray, targets: np.ndarray, way: str, imagenet=None) -> 'PartAnswer':
        """This answer with `way`'s gate and temperature fitted on holdout photos: `parts` their part ('top' or
        'rare'), `targets` their class indices in `vocab`, `imagenet` the frozen network's probabilities of them (for
        `IMAGENET_GATE`).  The temperature leaves out photos the answer cannot get right (a class with neither training
        photos nor a zero-shot row has probability 0 there)."""
        is_top, targets = np.asarray(parts) == 'top', np.asarray(targets)
        evidence, on_holdout = gate_evidence(self.gate, members, self.index()), dict(self.on_holdout)
        if self.needs_imagenet:
            if imagenet is None: raise ValueError(f"the {self.gate} gate is fitted on ImageNet probabilities too")
            fit, crossed = fit_imagenet_gate(evidence, imagenet, is_top)
        else:
            scale, bias = fit_platt(evidence, is_top)
            fit, crossed = dict(scale=scale, bias=bias), None
        fits = {**self.fits, way: dict(fit, temperature=1.)}
        answer = PartAnswer(self.vocab, self.stages, self.gate, fits)
        joined = answer.untempered(members, way, imagenet) if crossed is None else answer.joined(crossed, members)
        answerable = joined[np.arange(len(joined)), targets] > 0
        fits[way]['temperature'] = fit_temperature(joined[answerable], targets[answerable])
        if crossed is not None: on_holdout[way] = temper(joined, fits[way]['temperature'])
        return PartAnswer(self.vocab, self.stages, self.gate, fits, self.attributes_from, self.holdout,
                          self.attributes, self.review, on_holdout)

    def holdout_answer(self, members: dict, way: str, imagenet=None) -> np.ndarray:
        "The answer on the holdout photos it was fitted on: cross-fitted where `fitted` kept it so, else `apply`'s."
        if way in self.on_holdout: return self.on_holdout[way]
        return self.apply(members, way == WAYS[1], imagenet)

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
