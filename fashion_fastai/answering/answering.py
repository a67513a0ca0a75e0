"""How a trained model's outputs become the probabilities it answers with: calibrated, and joined with the zero-shot
classes.  What is fitted (calibrate.py, on the run's holdout) is recorded here, in the model's JSON, so that `predict`,
the web page and the exported forms answer exactly as evaluation scored.

- Temperatures (temperature.py), one per head: a probability then means what it says on photos like the holdout's.
- The zero-shot path (zero_shot.py): classes that had no training photo, scored by the frozen ImageNet network
  (imagenet_classifier.py), joined with the trained head at the boost fitted on the holdout, then tempered with a
  temperature of their own.  `closed_set` leaves it out: the trained head alone, as the published runs of the protocol
  were scored.

Nothing here imports training code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fashion_fastai.answering.temperature import temper
from fashion_fastai.core.schema import LABEL
from fashion_fastai.answering.zero_shot import ZeroShotPath

# below this calibrated probability an answer "needs review" (predict's --min-prob default, the report's line)
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

    @property
    def has_zero_shot(self) -> bool: return self.zero_shot is not None and len(self.zero_shot.head.classes) > 0

    def apply(self, head_probs: dict, imagenet_probs=None, closed_set: bool = False) -> tuple[dict, np.ndarray | None]:
        """(every head's probabilities as answered, which images the zero-shot path answered or None when it was not
        used): each head tempered; the article type joined first unless `closed_set`."""
        out = {h: temper(p, self.temperatures.get(h, 1.)) for h, p in head_probs.items()}
        if closed_set or not self.has_zero_shot or imagenet_probs is None: return out, None
        joined = self.zero_shot.joined(np.asarray(head_probs[LABEL]), np.asarray(imagenet_probs))
        out[LABEL] = temper(joined, self.joined_temperature)
        return out, self.zero_shot.routed(out[LABEL])

    def to_dict(self) -> dict:
        zs = None if self.zero_shot is None else dict(**self.zero_shot.to_dict(), temperature=self.joined_temperature,
                                                       network=self.network)
        return dict(temperatures=self.temperatures, zero_shot=zs, holdout=self.holdout, why_not=self.why_not)

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
                   d.get('why_not', ''))
