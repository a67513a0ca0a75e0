"""The review flag (`uncertain`): the rule that says which answers a catalogue should check, chosen on the holdout for a
stated precision of the answers it leaves unflagged.

An answer is flagged when its best calibrated probability is below a threshold.  The threshold is the lowest at which
the holdout's unflagged answers are right at least `PRECISION` of the time (95%: what a catalogue publishes without
review).  A product of a kind never seen in training (the holdout has none) is made on the holdout by leaving out each
subCategory in turn (categories.py: every article type of it, its probability mass removed and the rest renormalised),
so that its photos are answered as a never-seen product would be; the threshold then rises to flag `NOVEL_FLAGGED` of
them, but never so far that fewer than `MIN_UNFLAGGED` of the holdout's answers stay unflagged: precision first, novelty
next, the review load last.  Numpy only.
"""
from __future__ import annotations

import numpy as np

PRECISION = 0.95       # the share of unflagged holdout answers that must be right
NOVEL_FLAGGED = 0.90   # the share of photos of a never-seen kind (made on the holdout) the flag should catch
MIN_UNFLAGGED = 0.65   # the share of holdout answers the novelty bound may not flag beyond
NEVER = 1.0 + 1e-9     # a threshold past every probability: everything is flagged


def precision_threshold(probs, targets, precision: float = PRECISION) -> float:
    """The lowest threshold t such that the answers with best probability >= t are right at least `precision` of the
    time (all photos with one probability fall on the same side); `NEVER` when no t does."""
    conf, hit = _conf_hit(probs, targets)
    if not len(conf): return NEVER
    order = np.argsort(-conf, kind='stable')
    conf, hit = conf[order], hit[order]
    last = np.r_[conf[1:] != conf[:-1], True]  # the last photo of each run of equal probabilities
    ok = (np.cumsum(hit) / np.arange(1, len(hit) + 1) >= precision) & last
    return float(conf[np.flatnonzero(ok)[-1]]) if ok.any() else NEVER


def coverage_threshold(probs, share: float = MIN_UNFLAGGED) -> float:
    "The highest threshold that leaves at least `share` of the photos unflagged."
    conf = np.sort(np.asarray(probs, np.float64).max(1))[::-1]
    if not len(conf): return NEVER
    return float(conf[max(int(np.ceil(share * len(conf) - 1e-9)) - 1, 0)])


def left_out_best(probs, targets, groups) -> np.ndarray:
    """Each photo's best probability once every article type of its group (`groups`: a group label per article type,
    None for none) is left out and the rest renormalised: how it would be answered had its kind never been trained.
    Photos whose article type has no group get NaN."""
    p, targets = np.asarray(probs, np.float64), np.asarray(targets)
    groups = np.asarray([g if g is not None else '' for g in groups], object)
    out = np.full(len(p), np.nan)
    for g in set(groups) - {''}:
        mine = groups[targets] == g
        if not mine.any(): continue
        rest = p[mine] * (groups != g)
        out[mine] = rest.max(1) / np.clip(rest.sum(1), 1e-300, None)
    return out


def novelty_threshold(left_out, share: float = NOVEL_FLAGGED) -> float | None:
    "The lowest threshold that flags at least `share` of the left-out photos; None without any."
    m = np.sort(np.asarray(left_out, np.float64)[~np.isnan(left_out)])
    if not len(m): return None
    k = int(np.ceil(share * len(m) - 1e-9))  # photos that must fall below the threshold
    return float(np.nextafter(m[k - 1], np.inf)) if k else 0.


def fit_review(probs, targets, groups) -> tuple[float, dict]:
    """(the review threshold, what it was chosen from on the holdout): `probs` the holdout's answered probabilities,
    `targets` their class indices, `groups` a group per class (its subCategory) for the never-seen products made by
    leaving groups out."""
    t_precision = precision_threshold(probs, targets)
    left = left_out_best(probs, targets, groups)
    t_novel, t_cover = novelty_threshold(left), coverage_threshold(probs)
    threshold = max(t_precision, min(t_novel, t_cover) if t_novel is not None else 0.)
    return threshold, dict(threshold=threshold, precision_threshold=t_precision, novelty_threshold=t_novel,
                           coverage_threshold=t_cover, target_precision=PRECISION, target_novel=NOVEL_FLAGGED,
                           min_unflagged=MIN_UNFLAGGED,  # and what precision leaving that share unflagged gives:
                           precision_at_min_unflagged=flag_numbers(probs, targets, t_cover)['precision'],
                           left_out_photos=int((~np.isnan(left)).sum()),
                           left_out_flagged=float((left[~np.isnan(left)] < threshold).mean())
                           if (~np.isnan(left)).any() else None,
                           **flag_numbers(probs, targets, threshold))


def flag_numbers(probs, targets, threshold: float, untrained=None) -> dict:
    """At `threshold`: the share of photos left unflagged (coverage) and the share of those answered right (precision);
    with `untrained` (per photo: its class had no training photo), the share of those photos answered right or
    flagged."""
    conf, hit = _conf_hit(probs, targets)
    sure = conf >= threshold
    out = dict(coverage=float(sure.mean()) if len(sure) else None,
               precision=float(hit[sure].mean()) if sure.any() else None)
    if untrained is not None:
        new = np.asarray(untrained, bool)
        out.update(untrained_photos=int(new.sum()),
                   untrained_right_or_flagged=float((hit[new] | ~sure[new]).mean()) if new.any() else None,
                   untrained_right=float(hit[new].mean()) if new.any() else None)
    return out


def _conf_hit(probs, targets) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, np.float64)
    return p.max(1) if len(p) else np.zeros(0), (p.argmax(1) == np.asarray(targets)) if len(p) else np.zeros(0, bool)
