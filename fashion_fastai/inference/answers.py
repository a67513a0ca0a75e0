"""What a user is told for each photo: its top-k article types, each other attribute's best value, whether it is
`uncertain` and whether a zero-shot class answered it; the one function every command that answers photos calls."""
from __future__ import annotations

import torch

from fashion_fastai.core.schema import LABEL
from fashion_fastai.inference.locate import readable
from fashion_fastai.inference.predictors import Predictor


def answers(predictor: Predictor, files: list, heads: dict, topk: int = 5, min_prob: float = None,
            routed: list = None) -> list:
    """Per file, its top-k article types (and, from a model with other attributes, each one's answered value under
    `attributes`: for masterCategory and subCategory, where the run's holdout chose so, the value of the article type
    answered) from `heads` (`answer_probs` of `files`); whether it is `uncertain` (its best article type below
    `min_prob`, by default the review rule fitted on the run's holdout, `Predictor.review_prob`); with `routed`
    (`answer_probs`'), whether a zero-shot class answered it (`zero_shot`).  Nothing is dropped or relabelled."""
    threshold = predictor.review_prob if min_prob is None else min_prob
    decided = predictor.answering.answer_indices({h: p.numpy() for h, p in heads.items()})
    heads = dict(heads)
    probs = heads.pop(LABEL)
    k = min(topk, probs.shape[1])
    vals, idxs = probs.topk(k, dim=1)
    best = {h: decided[h] if h in decided else p.argmax(dim=1).numpy() for h, p in heads.items()}
    results = []
    for n, (f, v, i) in enumerate(zip(files, vals.tolist(), idxs.tolist())):
        results.append({'path': str(f),
                        'top': [{'class': predictor.vocab[j], 'prob': round(p, 4)} for p, j in zip(v, i)]})
        if heads: results[-1]['attributes'] = {h: {'class': predictor.vocabs[h][int(best[h][n])],
                                                   'prob': round(float(heads[h][n, int(best[h][n])]), 4)}
                                               for h in heads}
        results[-1]['uncertain'] = v[0] < threshold
        if routed is not None: results[-1]['zero_shot'] = routed[n]
    return results


def answering_note(predictor: Predictor) -> dict:
    "What the answers' probabilities are, for predict's JSON and its one line on stderr."
    a = predictor.answering
    why = ('--closed-set: the trained classes alone' if predictor.closed_set and a.has_zero_shot else a.why_not)
    return dict(calibrated=bool(a.temperatures), zero_shot=predictor.zero_shot, review_prob=predictor.review_prob,
                **({'zero_shot_classes': len(predictor.zero_shot_classes)} if predictor.zero_shot else
                   {'why_not': why}))


def answer_files(predictor: Predictor, files: list,
                 embed: bool = False) -> tuple[dict, list | None, torch.Tensor | None]:
    """Readable `files` as the model answers them (`Predictor.answered`, which applies the model's `Answering`, as the
    report scored): (every head's probabilities, per file whether a zero-shot class answered it or None, and with
    `embed` their embeddings (`WeightsOnlyModel.embed`) from the same forward pass, else None)."""
    if not embed: return (*predictor.answer_probs(files), None)
    embeddings, heads = predictor.embed(files)
    return (*predictor.answered(heads, files), embeddings)


def answer_readable(predictor: Predictor, files: list, topk: int = 5, min_prob: float = None,
                    embed: bool = False):
    """`answers` for files already checked (`readable`), so that a caller answering one photo with several models
    decodes it for checking once; with `embed`, (the answers, their embeddings or None)."""
    heads, routed, embeddings = answer_files(predictor, files, embed) if files else ({}, None, None)
    results = answers(predictor, files, heads, topk, min_prob, routed) if files else []
    return (results, embeddings) if embed else results


def predict_paths(predictor: Predictor, paths, topk: int = 5, min_prob: float = None,
                  embed: bool = False) -> tuple:
    """`answers` for the readable images under `paths`, and the skipped ones with reasons; with `embed`, third, their
    embeddings (for `--similar`; None without a readable image).  What predict and the web page answer with."""
    files, skipped = readable(paths)
    if not embed: return answer_readable(predictor, files, topk, min_prob), skipped
    results, embeddings = answer_readable(predictor, files, topk, min_prob, embed=True)
    return results, skipped, embeddings
