"""The run's answer for any photo (`joined.json`, answering/parts.py) behind the `Predictor` interface: each member
model loaded in the form and on the engine asked for, each answering as its own JSON says, then joined by the part gate.

The frozen ImageNet network that the stages' zero-shot classes need is loaded once and run once per photo for every
member.  `head_probs` gives every member's heads, named `<model>/<head>`, so that `answered` (and a worker process of
`pool.ProcessPredictor`) can join them later; `embed` gives the embedding of the model whose other attribute heads
answer, the one an index of the catalogue is built with."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fashion_fastai.answering.answering import REVIEW_PROB, Answering
from fashion_fastai.answering.parts import PartAnswer, read_part_answer
from fashion_fastai.core.schema import LABEL
from fashion_fastai.inference.predictors import Predictor

SEP = '/'  # between a member's name and its head's in `head_probs`


def embedding_json(path: Path) -> Path:
    "The weights-only JSON of the member whose embedding the joined answer gives (an index names its weights)."
    answer = read_part_answer(path)
    return Path(path).parent / f'{answer.attributes_from}.json'


class JoinedPredictor(Predictor):
    "The stages joined by the part gate; `members` ({model name: its loaded `Predictor`}) answer as their JSON says."
    def __init__(self, answer: PartAnswer, members: dict, scorer=None, closed_set: bool = False):
        self.answer, self.members, self.scorer, self.closed_set = answer, members, scorer, closed_set
        heads = members[answer.attributes_from].vocabs
        self.vocabs = {**{h: v for h, v in heads.items() if h != LABEL}, LABEL: list(answer.vocab)}
        self.device = next(iter(members.values())).device
        fit = answer.fits['closed_set' if closed_set else 'zero_shot']
        self.answering = Answering({LABEL: fit['temperature']}, why_not='' if self.zero_shot else (
            'no stage of the run has zero-shot classes' if not closed_set else ''), attributes=answer.attributes)

    @property
    def review_prob(self) -> float:
        return self.answer.review.get('closed_set' if self.closed_set else 'zero_shot', REVIEW_PROB)

    @property
    def zero_shot(self) -> bool:
        return not self.closed_set and self.scorer is not None and any(
            m.answering.has_zero_shot for m in self.members.values())

    @property
    def zero_shot_classes(self) -> tuple:
        stages = [self.members[n] for n, _ in self.answer.stages.values()]  # the gate's model answers none itself
        return tuple(c for m in stages if self.zero_shot and m.answering.has_zero_shot
                     for c in m.answering.zero_shot.head.classes)

    def head_probs(self, paths, bs=64, num_workers: int = None) -> dict:
        paths = list(paths)
        return {f'{n}{SEP}{h}': p for n, m in self.members.items()
                for h, p in m.head_probs(paths, bs, num_workers).items()}

    def embed(self, paths, bs=64) -> tuple[torch.Tensor, dict]:
        paths, name = list(paths), self.answer.attributes_from
        embeddings, heads = self.members[name].embed(paths, bs)
        out = {f'{n}{SEP}{h}': p for n, m in self.members.items() if n != name
               for h, p in m.head_probs(paths, bs).items()}
        return embeddings, {**out, **{f'{name}{SEP}{h}': p for h, p in heads.items()}}

    def answered(self, heads: dict, files) -> tuple[dict, list | None]:
        """Every member's heads as it answers them (the ImageNet network run once for all), the article type joined
        by the gate, the other attributes from `answer.attributes_from`; which photos a zero-shot class answered."""
        imagenet = self.scorer.probs(files) if self.zero_shot and len(files) else None
        per = {}
        for n, m in self.members.items():
            mine = {h.split(SEP, 1)[1]: p.numpy() for h, p in heads.items() if h.split(SEP, 1)[0] == n}
            zs = imagenet is not None and m.answering.has_zero_shot
            # the member's other heads calibrated, none answered from its own article type: the joined one decides
            per[n], _ = replace(m.answering, attributes={}).apply(mine, imagenet if zs else None, closed_set=not zs)
        label = self.answer.apply({n: per[n][LABEL] for n in self.answer.members}, self.closed_set)
        probs = self.answering.derived({**{h: per[self.answer.attributes_from][h] for h in self.vocabs if h != LABEL},
                                        LABEL: label})
        out = {h: torch.from_numpy(np.asarray(p)).float() for h, p in probs.items()}
        if not self.zero_shot: return out, None
        zs_index = [self.answer.vocab.index(c) for c in self.zero_shot_classes]
        return out, [bool(r) for r in np.isin(label.argmax(1), zs_index)]

    def close(self):
        for m in self.members.values(): m.close()

