"""How a trained model's outputs become the probabilities it answers with: calibrated, and joined with the zero-shot
classes.  What is fitted (calibrate.py, on the run's holdout) is recorded here, in the model's JSON, so that `predict`,
the web page and the exported forms answer exactly as evaluation scored.

- The article types' prior (logit adjustment, Menon et al., ICLR 2021): the head's probabilities divided by its
  training counts raised to a strength fitted on the holdout (0: none), because a head trained on skewed counts favours
  the classes it saw most beyond what photos like the holdout's bear out.
- Temperatures (temperature.py), one per head: a probability then means what it says on photos like the holdout's.
- The zero-shot path (zero_shot.py): classes that had no training photo, scored by the frozen ImageNet network
  (imagenet_classifier.py), joined with the trained head at the boost fitted on the holdout, then tempered with a
  temperature of their own.  `closed_set` leaves it out: the trained head alone, as the published runs of the protocol
  were scored.
- The attributes an article type decides (categories.py): answered from the article type's probabilities where the
  holdout chose so, so that they agree with the article type answered.
- The review rule (review.py): the probability below which an answer is `uncertain`, one per way of answering.

Nothing here imports training code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fashion_fastai.answering.categories import ARTICLE_TYPE, HEADS, answer_index, attribute_probs
from fashion_fastai.answering.temperature import temper
from fashion_fastai.core.schema import LABEL
from fashion_fastai.answering.zero_shot import ZeroShotPath

# below this calibrated probability an answer "needs review" where its model has no review rule fitted on a holdout
REVIEW_PROB = 0.5


@dataclass
class Answering:
    "What a model answers with beyond its trained heads' softmax; `from_meta` of a model from before it: nothing."
    temperatures: dict = field(default_factory=dict)   # {head: temperature of the trained head alone}
    zero_shot: ZeroShotPath = None                     # None: no zero-shot path (`why_not` says why)
    joined_temperature: float = 1.
    network: dict = None       # the frozen ImageNet network: {'file', 'arch', 'size'} (imagenet_classifier.py)
    holdout: dict = field(default_factory=dict)        # what it was fitted on: images, max_routed, routed
    why_not: str = ''
    prior: tuple = ()          # the article types' training photos, in the vocab's order (logit adjustment's prior)
    prior_strength: float = 0.  # its strength fitted on the holdout: 0 leaves the head as trained
    # {attribute: {'way': a categories.WAYS, 'of': each article type's value index}}: those the article type decides
    attributes: dict = field(default_factory=dict)
    review: dict = field(default_factory=dict)  # {'zero_shot' | 'closed_set': the review threshold, from the holdout}

    @property
    def has_zero_shot(self) -> bool: return self.zero_shot is not None and len(self.zero_shot.head.classes) > 0

    def review_prob(self, closed_set: bool = False) -> float:
        "The probability below which an answer is `uncertain`: the holdout's rule, else `REVIEW_PROB`."
        return self.review.get('closed_set' if closed_set or not self.has_zero_shot else 'zero_shot', REVIEW_PROB)

    def derived(self, probs: dict) -> dict:
        "`probs` (as answered) with each attribute the article type decides answered the way the holdout chose."
        out = dict(probs)
        for a, d in self.attributes.items():
            if a in out and d['way'] != HEADS: out[a] = attribute_probs(d['way'], out[a], out[LABEL], d['of'])
        return out

    def answer_indices(self, probs: dict) -> dict:
        """{attribute: each photo's answered value index} for the attributes answered from the article type (the value
        of the article type answered, which the most probable value need not be)."""
        return {a: answer_index(d['way'], probs[a], probs[LABEL], d['of'])
                for a, d in self.attributes.items() if a in probs and d['way'] == ARTICLE_TYPE}

    def apply(self, head_probs: dict, imagenet_probs=None, closed_set: bool = False) -> tuple[dict, np.ndarray | None]:
        """(every head's probabilities as answered, which images the zero-shot path answered or None when it was not
        used): each head tempered; the article type joined first unless `closed_set`."""
        head_probs = {**head_probs, LABEL: adjust_prior(head_probs[LABEL], self.prior, self.prior_strength)}
        out = {h: temper(p, self.temperatures.get(h, 1.)) for h, p in head_probs.items()}
        if closed_set or not self.has_zero_shot or imagenet_probs is None: return self.derived(out), None
        joined = self.zero_shot.joined(np.asarray(head_probs[LABEL]), np.asarray(imagenet_probs))
        out[LABEL] = temper(joined, self.joined_temperature)
        return self.derived(out), self.zero_shot.routed(out[LABEL])

    def to_dict(self) -> dict:
        zs = None if self.zero_shot is None else dict(**self.zero_shot.to_dict(), temperature=self.joined_temperature,
                                                       network=self.network)
        return dict(temperatures=self.temperatures, zero_shot=zs, holdout=self.holdout, why_not=self.why_not,
                    prior=list(self.prior), prior_strength=self.prior_strength, attributes=self.attributes,
                    review=self.review)

    @classmethod
    def from_meta(cls, meta: dict) -> 'Answering':
        """From a model's JSON; a model from before calibration answers with its softmax, and says it has no zero-shot
        path."""
        d = meta.get('answering')
        if d is None:
            return cls(why_not='this model was exported before zero-shot answers and calibration existed (retrain it, '
                               'or `python -m fashion_fastai.train --resume` its run to add them)')
        zs = d.get('zero_shot')
        return cls(dict(d.get('temperatures', {})),
                   ZeroShotPath.from_dict(meta['vocab'], zs) if zs else None,
                   zs['temperature'] if zs else 1., zs['network'] if zs else None, d.get('holdout', {}),
                   d.get('why_not', ''), tuple(d.get('prior', ())), d.get('prior_strength', 0.),
                   d.get('attributes', {}), d.get('review', {}))


def adjust_prior(probs, prior, strength: float) -> np.ndarray:
    """Post-hoc logit adjustment: `probs` [N, C] times each class's training count to the power -`strength`,
    renormalised; unchanged at strength 0.  A class without a training photo counts as the most frequent one: the head
    never learnt it, and favouring it would only answer photos with a class it cannot recognise."""
    probs = np.asarray(probs)
    if not strength or not len(prior): return probs
    counts = np.asarray(prior, np.float64)
    weights = np.where(counts > 0, counts, counts.max()) ** -strength
    out = np.asarray(probs, np.float64) * weights
    return out / np.clip(out.sum(1, keepdims=True), 1e-300, None)


PRIOR_STRENGTHS = (0., .25, .5, .75, 1., 1.25, 1.5)  # the logit adjustment's strengths measured on the holdout


def fit_prior_strength(probs, targets, prior, strengths=PRIOR_STRENGTHS) -> tuple[float, dict]:
    """(the strength of `strengths` with the most holdout photos of trained classes right, the weakest of equals; each
    strength's top-1 on them): logit adjustment is kept only where the holdout says it helps."""
    targets, counts = np.asarray(targets), np.asarray(prior)
    trained = counts[targets] > 0 if len(targets) else np.zeros(0, bool)
    top1 = {float(s): float((adjust_prior(probs, prior, s)[trained].argmax(1) == targets[trained]).mean())
            if trained.any() else 0. for s in strengths}
    best = max(top1.values())
    return next(s for s in top1 if top1[s] == best), top1
