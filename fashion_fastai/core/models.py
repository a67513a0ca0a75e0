"""The models a run trains, as data: one row each, in training order. Every other module takes the models' names, parts,
titles and options from here (as timm's registry answers every question about a model name in one place), so a new model
of the run is one more row, not a new branch in the training loop, the report, `predict` and the web page.

Nothing here imports training or inference code: `predict` and the web page read it too.
"""
from __future__ import annotations

from dataclasses import dataclass

ALL = 'all'  # the part of every article type (the top part's and the rare part's together)
TOP, RARE = 'top', 'rare'
PARTS = (TOP, RARE)  # the protocol's two parts; `ALL` is their union


@dataclass(frozen=True)
class ModelSpec:
    "One model of a run: what it learns, where it starts, which `TrainConfig` fields set its schedule."
    name: str            # file stem in the run folder (`<name>.pkl/.pth/.json`), key in metrics.json and checkpoints/
    part: str            # the article types it learns: TOP, RARE or ALL
    title: str           # for people (report sections, the web page); `{n}`: its number of classes
    epochs_option: str   # the `TrainConfig` field with its epochs (0 skips the model, where allowed)
    lr_option: str       # the field with its learning rate
    body: str            # where its body starts: 'imagenet' (scratch without weights) or 'previous' (the model before)
    body_option: str = None  # a field that overrides `body`: 'imagenet', 'scratch' or a model's name
    head_option: str = None  # a field choosing its article-type head: 'new' or 'imprint' (None: always new)
    head_epochs: int = 0     # head-only epochs before it, unless --freeze-epochs (see `TrainConfig.head_epochs`)
    optional: bool = True    # False: every run trains it

    def epochs(self, cfg) -> int: return getattr(cfg, self.epochs_option)
    def lr(self, cfg): return getattr(cfg, self.lr_option)
    def head(self, cfg) -> str: return getattr(cfg, self.head_option) if self.head_option else 'new'
    def describe(self, n: int) -> str: return self.title.format(n=n)


MODELS = (
    ModelSpec('stage1', TOP, 'Stage one: the {n} most frequent article types', 'epochs', 'lr', body='imagenet',
              optional=False),
    ModelSpec('stage2', RARE, 'Stage two: {n} rarer article types', 'epochs2', 'lr2', body='previous',
              body_option='stage2_body', head_option='stage2_head'),
    ModelSpec(ALL, ALL, 'Every article type ({n} classes)', 'epochs_all', 'lr_all', body='previous',
              head_option='all_head', head_epochs=1),
)
NAMES = tuple(m.name for m in MODELS)
BY_NAME = {m.name: m for m in MODELS}
FIRST = MODELS[0].name                                      # the model every run has
STAGES = tuple(m.name for m in MODELS if m.part != ALL)     # the protocol's stages, each on one part
# the run's answer for any photo: each part's stage, weighed by a part gate (answering/parts.py), written as
# `<JOINED>.json` beside the models when the holdout chose it over the all-classes model alone
JOINED = 'joined'
CHOICES = (*NAMES, JOINED)  # what `--stage` may name
ANSWER_ORDER = (JOINED, *(m.name for m in MODELS if m.part == ALL), FIRST)  # what answers for a run folder, first found


def spec(name: str) -> ModelSpec:
    "The row of `name`; a `KeyError` naming the models there are."
    try: return BY_NAME[name]
    except KeyError: raise KeyError(f"no model {name!r} in a run: the models are {', '.join(NAMES)}") from None


def trained(cfg) -> tuple:
    "The rows `cfg` trains, in order (a model with 0 epochs is skipped)."
    return tuple(m for m in MODELS if not m.optional or m.epochs(cfg))


def body_source(m: ModelSpec, cfg) -> str:
    """Where `m`'s body starts under `cfg`: 'imagenet', 'scratch' or the name of the model trained before it whose body
    it takes."""
    source = getattr(cfg, m.body_option) if m.body_option else m.body
    if source != 'previous': return source
    before = [t.name for t in trained(cfg) if MODELS.index(t) < MODELS.index(m)]
    return before[-1]


def heads_seen_part(m: ModelSpec, cfg) -> str:
    """The part whose training images the model's other attribute heads have seen: its own when it starts afresh, every
    part when it carries on from a model before it (the heads travel with the body)."""
    return ALL if body_source(m, cfg) in NAMES else m.part
