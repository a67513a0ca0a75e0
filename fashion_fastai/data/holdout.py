"""Which even-year photos the models never train on, so that settings, temperatures and the zero-shot gate are chosen
on photos that differ from training as the odd-year test split does.

A random share of the even years (`random`, the first rule) shares products with training: most of its photos have a
sibling there, the same product in another colour, while most test photos have none; and it has none of the test
split's change of year.  So a model scores far higher on it than on the test split, and a temperature fitted on it
hardly calibrates for the test years (BENCHMARKS.md, "A holdout that ranks settings as the test split does").  The
other rules hold out what the test split differs by:

- `years`: whole even years, the smallest first, as many as bring the held share nearest the fraction (the largest
  year always trains);
- `products`: whole products, i.e. every photo whose name, colour words taken out, is the same (the published data's
  near-duplicates are one product in several colours), drawn per article type.

Rules combine (`years,products`): each draws from what the ones before it left to train on, in the order of `RULES`.
Each held photo records the rule that held it (`held_by`), so that one run can score each rule's photos apart.

`auto` (the default) is `years` where whole even years come near the share (the Kaggle data's do), else `random` (a
small catalogue whose even years are each far from it, such as the demo's four quarters): of the three, `years` ranks
settings at the test split's level and gives the temperatures that calibrate for the test years.
"""
from __future__ import annotations

import re

import pandas as pd

# --holdout-by's rules, in the order they apply whatever order they are given in
RULES = ('years', 'products', 'random')
RANDOM = RULES[-1]
AUTO = 'auto'  # --holdout-by's default: one of the rules, chosen on the rows (`resolve`)
_WORD = re.compile(r"[\w&']+")


def product_stems(rows: pd.DataFrame) -> pd.Series:
    """Each row's product: its `productDisplayName` in lower case without any colour word of the data's `baseColour`
    values, so that 'Kiara Women Navy Blue Handbag' and 'Kiara Women Red Handbag' are one product.  A row without a name
    is a product of its own."""
    colours = {w for c in rows.get('baseColour', pd.Series(dtype=object)).dropna()
               for w in _WORD.findall(str(c).lower())}
    names = rows.get('productDisplayName', pd.Series(index=rows.index, dtype=object))

    def stem(row_id, name) -> str:
        kept = [w for w in _WORD.findall(name.lower()) if w not in colours] if isinstance(name, str) else []
        return ' '.join(kept) if kept else f'#{row_id}'

    return pd.Series([stem(i, n) for i, n in zip(rows['id'], names.reindex(rows.index))], index=rows.index)


def held_years(years: pd.Series, fraction: float) -> list[int]:
    "The smallest years of `years` (one per training row), added while each brings the held count nearer `fraction`."
    counts = sorted(years.astype('int64').value_counts().items(), key=lambda yc: (yc[1], yc[0]))
    target, held, n = fraction * len(years), [], 0
    for year, count in counts[:-1]:  # the largest year always trains
        if abs(n + count - target) >= abs(n - target): break
        held.append(int(year)); n += count
    return sorted(held)


def resolve(by: tuple, years: pd.Series, fraction: float) -> tuple:
    """The rules `by` names, with `auto` settled on the even years (one per training row): years if any is held, else
    random."""
    if tuple(by) != (AUTO,): return tuple(by)
    return ('years',) if held_years(years, fraction) else (RANDOM,)


def _products(train: pd.DataFrame, stems: pd.Series, label: str, fraction: float, seed: int) -> pd.Index:
    "Rows of a `fraction` of each article type's products (a product belongs to the type most of its photos have)."
    stems = stems[train.index]
    owner = train.groupby(stems)[label].agg(lambda s: s.value_counts().sort_index(kind='stable').idxmax())
    chosen = set(owner.groupby(owner).sample(frac=fraction, random_state=seed).index)
    return train.index[stems.isin(chosen)]


def hold_out(train: pd.DataFrame,   # the even-year rows (`id`, the label, `year`, `productDisplayName`, `baseColour`)
             label: str,            # the column the holdout is stratified on
             fraction: float,       # each rule's share
             by: tuple,             # rules of RULES, or (AUTO,)
             seed: int) -> pd.Series:
    "The rule that holds each row out ('' where the row trains), indexed like `train`."
    by = resolve(by, train['year'], fraction)
    held = pd.Series('', index=train.index, dtype=object)
    stems = product_stems(train) if 'products' in by else None
    for rule in (r for r in RULES if r in by):
        left = train[held == '']
        if rule == 'years':
            index = left.index[left['year'].astype('int64').isin(held_years(left['year'], fraction))]
        elif rule == 'products':
            index = _products(left, stems, label, fraction, seed)
        else:
            index = left.groupby(label).sample(frac=fraction, random_state=seed).index
        held[index] = rule
    return held


def describe(frame: pd.DataFrame, by: tuple = ()) -> dict:
    """What each rule held out, for the log and config.json: photos, and the years where whole years were held.  A rule
    of `by` (the rules asked for) that held nothing is there too, with 0 photos: `years` holds none where no whole even
    year comes nearer the fraction than none does (its record then gives the even years' photos, to choose another)."""
    held = frame[frame['held_by'] != '']
    out = {rule: dict(photos=int((held['held_by'] == rule).sum())) for rule in RULES
           if rule in by or (held['held_by'] == rule).any()}
    if 'years' in out:
        out['years']['years'] = sorted(int(y) for y in held.loc[held['held_by'] == 'years', 'year'].unique())
    if 'years' in out and not out['years']['photos']:
        even = frame.loc[frame['split'].isin(['train', 'valid']), 'year'].astype('int64').value_counts().sort_index()
        out['years']['even_years'] = {int(y): int(n) for y, n in even.items()}
    if 'products' in out:  # stems over the rows the rule drew from, as it drew them
        stems = product_stems(frame[frame['split'].isin(['train', 'valid'])])
        out['products']['products'] = int(stems[held.index[held['held_by'] == 'products']].nunique())
    return out
