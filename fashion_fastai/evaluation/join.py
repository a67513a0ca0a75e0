"""The run's answer for any photo, chosen on the holdout: each part gate of `answering/parts.py` joins the stages, and
the all-classes model alone stands beside them; the one with the most holdout photos right (with zero-shot answers, the
way `predict` answers by default) is kept, written as `joined.json` when it is a gate, and scored once on the test
split, both ways of answering.

The models are read back from the run folder through the inference package, as `predict` loads them, so the numbers are
those of the answer a user gets.  Every fitted value (the gate's scale and bias, the joined temperature) comes from the
holdout of every part (even-year photos no model trained on); the test split is only scored.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fashion_fastai.answering.answering import REVIEW_PROB
from fashion_fastai.answering.parts import GATES, WAYS, PartAnswer
from fashion_fastai.answering.review import fit_review, flag_numbers
from fashion_fastai.answering.temperature import reliability
from fashion_fastai.answering.zero_shot import MAX_ROUTED
from fashion_fastai.core.models import ALL, PARTS, STAGES, spec
from fashion_fastai.core.schema import LABEL
from fashion_fastai.evaluation import trust
from fashion_fastai.evaluation.calibrate import review_numbers
from fashion_fastai.evaluation.scores import by_part, class_table, summarize
from fashion_fastai.inference.load import load_model_file

ALONE = ALL  # the candidate that is the all-classes model by itself


def answered(predictor, files: list) -> dict:
    """{way: the article type's probabilities [N, its classes] as `predictor` answers `files`}, each model's network
    run once for both ways; 'routed': which photos a zero-shot class answered (None without a zero-shot path);
    'heads': the other heads calibrated, before any is answered from the article type (the joined answer's own)."""
    heads = predictor.head_probs(files)
    with_zs, routed = predictor.answered(heads, files)
    closed, _ = replace(predictor.answering, attributes={}).apply({h: p.numpy() for h, p in heads.items()},
                                                                 closed_set=True)
    return dict(zero_shot=with_zs[LABEL].double().numpy(), closed_set=np.asarray(closed[LABEL], np.float64),
                routed=None if routed is None else np.asarray(routed),
                heads={h: np.asarray(p, np.float64) for h, p in closed.items() if h != LABEL})


def _targets(rows: pd.DataFrame, vocab: list) -> np.ndarray:
    where = {c: i for i, c in enumerate(vocab)}
    return np.array([where[c] for c in rows[LABEL]], int)


def part_numbers(probs: np.ndarray, targets: np.ndarray, parts: np.ndarray, index: dict) -> dict:
    """Per part of the photos: their count, top-1, and the share answered with a class of the other part (the gate's
    errors)."""
    best = np.asarray(probs).argmax(1)
    out = {}
    for part in PARTS:
        mine = np.asarray(parts) == part
        other = np.isin(best[mine], index['rare' if part == 'top' else 'top'])
        out[part] = dict(photos=int(mine.sum()),
                         top1=float((best[mine] == targets[mine]).mean()) if mine.any() else None,
                         other_part=float(other.mean()) if mine.any() else None)
    return out


def candidates(members: dict, parts: np.ndarray, targets: np.ndarray, base: PartAnswer) -> dict:
    """{candidate: {way: (its answer, or None for the all-classes model alone; holdout top-1)}} on the holdout."""
    out = {}
    if ALL in members:
        out[ALONE] = {w: (None, float((members[ALL][w].argmax(1) == targets).mean())) for w in WAYS}
    for gate in GATES:
        needs = [n for n, _ in base.stages.values()] + ([ALL] if gate == 'all_parts' else [])
        if any(n not in members for n in needs): continue
        out[gate] = {}
        answer = PartAnswer(base.vocab, base.stages, gate, attributes_from=needs[-1])
        for w in WAYS:
            probs = {n: members[n][w] for n in needs}
            answer = answer.fitted(probs, parts, targets, w)
            out[gate][w] = (answer, None)
        for w in WAYS:
            probs = {n: members[n][w] for n in needs}
            out[gate][w] = (answer, float((answer.apply(probs, w == 'closed_set').argmax(1) == targets).mean()))
    return out


def join_stages(run_dir: Path,
                vocab: list,                 # every class, in the all-classes vocab's order
                holdout: pd.DataFrame,       # every part's holdout rows (`eval_rows(data, ALL, 'valid')`)
                test: pd.DataFrame,          # every part's test rows (`eval_rows(data, ALL)`)
                train_counts: dict,          # {class: training photos}
                scorer=None,                 # the run's frozen ImageNet network (remembers its photos), or None
                choice: str = 'auto',        # the candidate to keep (ALONE or one of GATES); auto: the holdout's best
                device='auto',
                categories: dict = None,     # {attribute: {article type: value}} (answering/categories.py)
                ) -> tuple[PartAnswer | None, dict]:
    """(the joined answer kept, or None when the all-classes model alone did best or a stage is missing; the report's
    numbers: each candidate's holdout top-1 both ways, and the kept answer's test table, summary and review numbers in
    the shape `calibrate` gives a model's)."""
    run_dir = Path(run_dir)
    there = [n for n in (*STAGES, ALL) if (run_dir / f'{n}.json').is_file()]
    stages = {spec(n).part: n for n in STAGES if n in there}
    if set(stages) != set(PARTS):
        return None, dict(why_not=f"the run has no model for every part ({', '.join(there)})")
    if not len(holdout):
        return None, dict(why_not='trained without a holdout (--holdout 0): nothing to choose and fit the part gate on')
    predictors = {n: load_model_file(run_dir / f'{n}.json', 'weights', device) for n in there}
    if scorer is not None:
        for p in predictors.values():
            if p.scorer is not None: p.scorer = scorer  # the run's, which has seen these photos already
    if ALL in predictors and list(predictors[ALL].vocab) != list(vocab):
        raise ValueError(f"{ALL}.json's classes are not the run's every class, in order: the run folder is mixed")
    base = PartAnswer(tuple(vocab), {part: (n, tuple(predictors[n].vocab)) for part, n in stages.items()}, GATES[0])
    hold_files, test_files = list(holdout['file']), list(test['file'])
    hold = {n: answered(p, hold_files) for n, p in predictors.items()}
    hold_y, hold_parts = _targets(holdout, vocab), holdout['part'].to_numpy()
    found = candidates(hold, hold_parts, hold_y, base)
    holdout_top1 = {c: {w: top1 for w, (_, top1) in ways.items()} for c, ways in found.items()}
    if choice not in ('auto', *found):
        return None, dict(why_not=f"--answer {choice} needs models this run lacks (it has {', '.join(there)})",
                          candidates=holdout_top1, kept=None)
    kept = choice if choice != 'auto' else max(
        found, key=lambda c: (holdout_top1[c][WAYS[0]], holdout_top1[c][WAYS[1]], c == ALONE))
    numbers = dict(holdout_images=len(holdout), review_prob=REVIEW_PROB, candidates=holdout_top1, kept=kept,
                   holdout_parts={c: {w: part_numbers(_answer(a, hold, w, c), hold_y, hold_parts, base.index())
                                      for w, (a, _) in ways.items()} for c, ways in found.items()})
    if kept == ALONE:
        numbers['why_not'] = ('the all-classes model alone answered the most holdout photos right' if choice == 'auto'
                              else f'--answer {ALONE}')
        return None, numbers
    answer = found[kept][WAYS[0]][0]
    answer.holdout = dict(images=len(holdout), candidates=holdout_top1, kept=kept)
    runs = {n: answered(predictors[n], test_files) for n in answer.members}
    y, test_parts, index = _targets(test, vocab), test['part'].to_numpy(), answer.index()
    joined_hold, joined_test = ({w: _answer(answer, members, w, kept) for w in WAYS} for members in (hold, runs))
    trusted = _trust(answer, categories or {}, predictors[answer.attributes_from].vocabs, hold, holdout, hold_y,
                     joined_hold, runs, test, y, joined_test, train_counts)
    zero_shot_classes = [c for n in answer.members if n != ALL and predictors[n].zero_shot
                         for c in predictors[n].answering.zero_shot.head.classes]
    zs_index = np.array([vocab.index(c) for c in zero_shot_classes], int)
    of_trained = np.array([train_counts.get(c, 0) > 0 for c in test[LABEL]])
    hold_trained = np.array([train_counts.get(c, 0) > 0 for c in holdout[LABEL]])
    hold_default = joined_hold[WAYS[0]]
    on_zs = np.isin(y, zs_index)
    nameable = {WAYS[0]: of_trained | on_zs, WAYS[1]: of_trained}
    tables, reviews, curves = {}, {}, {}
    for w in WAYS:
        after, before = joined_test[w], answer.untempered({n: runs[n][w] for n in answer.members}, w)
        tables[w] = class_table(torch.from_numpy(after), torch.from_numpy(y), vocab, train_counts)
        reviews[w] = dict(temperature=answer.fits[w]['temperature'], gate_scale=answer.fits[w]['scale'],
                          gate_bias=answer.fits[w]['bias'], **review_numbers(after, before, y, nameable[w]),
                          parts=part_numbers(after, y, test_parts, index))
        curves[f"{w.replace('_', '-')}, calibrated"] = reliability(after, y)
        if w == WAYS[0]: default = after
        else: closed = after
    numbers.update(
        gate=kept, members=list(answer.members), attributes_from=answer.attributes_from, curves=curves,
        heads={LABEL: reviews['closed_set']}, closed_summary=summarize(tables['closed_set']),
        closed_table=tables['closed_set'],
        zero_shot=dict(
            classes=zero_shot_classes, max_routed=MAX_ROUTED, temperature=reviews['zero_shot']['temperature'],
            holdout_routed=float(np.isin(hold_default.argmax(1), zs_index)[hold_trained].mean())
            if hold_trained.any() else 0.,
            test_routed=float(np.isin(default.argmax(1), zs_index).mean()),
            trained_test_routed=float(np.isin(default.argmax(1), zs_index)[of_trained].mean()),
            test_images_of_zero_shot_classes=int(on_zs.sum()),
            zero_shot_classes_top1=float((default[on_zs].argmax(1) == y[on_zs]).mean()) if on_zs.any() else None,
            closed_zero_shot_classes_top1=float((closed[on_zs].argmax(1) == y[on_zs]).mean()) if on_zs.any() else None,
            table=tables['zero_shot'], summary=summarize(tables['zero_shot']),
            **{k: v for k, v in reviews['zero_shot'].items() if k != 'temperature'}))
    for t in (numbers['closed_summary'], numbers['zero_shot']['summary']):
        t['parts'] = by_part(tables['closed_set'] if t is numbers['closed_summary'] else tables['zero_shot'],
                             {p: list(v) for p, (_, v) in answer.stages.items()})
    numbers['collateral'], numbers['collateral_classes'] = trust.collateral(closed, default, y, vocab,
                                                                            zero_shot_classes, train_counts)
    numbers.update(trusted)
    return answer, numbers


def _trust(answer: PartAnswer, table: dict, head_vocabs: dict, hold: dict, holdout: pd.DataFrame, hold_y,
           joined_hold: dict, runs: dict, test: pd.DataFrame, y, joined_test: dict, train_counts: dict) -> dict:
    """The joined answer's attributes the article type decides and its review rule, fitted on the holdout (recorded in
    `answer`) and measured on the test split (evaluation/trust.py): the report's numbers.  `hold` and `runs` are each
    member's answers on the holdout and test photos, `joined_hold` and `joined_test` the joined answer's, per way."""
    vocab, source = list(answer.vocab), answer.attributes_from
    of = trust.value_indices(table, vocab, head_vocabs)
    groups, untrained = trust.groups_of(table, vocab), np.array([not train_counts.get(c, 0) for c in test[LABEL]])
    values = lambda rows, a, mask: np.array([head_vocabs[a].index(v) for v in rows[a][mask]], int)
    out, answer.review = {}, {}
    for w in WAYS:
        label_hold, label_test = joined_hold[w], joined_test[w]
        answer.review[w], out[f'review_{w}'] = fit_review(label_hold, hold_y, groups)
        out[f'review_{w}']['test'] = flag_numbers(label_test, y, answer.review[w], untrained)
        if w != WAYS[0]: continue  # the attributes' way is chosen on the default answer
        masks = {a: trust.has_value(holdout, a) for a in of}
        answer.attributes, fitted = trust.fit_attributes(
            of, {a: hold[source]['heads'][a][masks[a]] for a in of}, label_hold, masks,
            {a: values(holdout, a, masks[a]) for a in of})
        masks = {a: trust.has_value(test, a) for a in of}
        out['attributes'] = trust.attribute_numbers(answer.attributes, {a: runs[source]['heads'][a][masks[a]]
                                                                        for a in of}, label_test, masks,
                                                    {a: values(test, a, masks[a]) for a in of}, fitted)
    return dict(review=out.pop('review_closed_set'), **out)


def _answer(answer: PartAnswer | None, members: dict, way: str, candidate: str) -> np.ndarray:
    "A candidate's answer on the photos `members` answered: the all-classes model's own, or the joined one."
    if answer is None: return members[candidate][way]
    return answer.apply({n: members[n][way] for n in answer.members}, way == 'closed_set')
