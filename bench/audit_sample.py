"""Benchmark: a random sample of what `python -m fashion_fastai.audit` flagged, on a page to judge by eye.

Draws `n` label issues (any attribute) and `groups` disagreeing near-duplicate groups, seeded, from an audit folder,
and writes `sample.html` there (the audit page's own sections) and a CSV with one row per sampled item and an empty
`verdict` column, to fill in while looking at the page: `error` (the label is wrong), `right` (the label is right: a
false alarm) or `unsure`.  BENCHMARKS.md reports the filled-in counts.

    .venv/bin/python bench/audit_sample.py runs/AUDIT --n 50 --groups 20   # runs/AUDIT/sample.html, sample.csv
"""
from __future__ import annotations

from html import escape
from pathlib import Path

import pandas as pd
from fastcore.script import call_parse

from fashion_fastai.core.atomic import atomic_write_text
from fashion_fastai.catalogue.audit_page import STYLE, group_row, thumbnail


@call_parse
def main(audit: Path,     # an audit folder (label_issues.csv, duplicate_groups.csv)
         n: int = 50,     # label issues to draw
         groups: int = 20, # disagreeing near-duplicate groups to draw
         seed: int = 0,
         ):
    audit = Path(audit)
    issues = pd.read_csv(audit / 'label_issues.csv').sample(n, random_state=seed).reset_index(drop=True)
    dups = pd.read_csv(audit / 'duplicate_groups.csv')
    keys = dups[['attribute', 'group']].drop_duplicates().sample(groups, random_state=seed)
    rows = ''.join(f"<tr><td>{i + 1}</td><td>{thumbnail(r['file'])}</td><td>{escape(r['attribute'])}</td>"
                   f"<td>{escape(str(r['given']))} ({100 * r['prob_given']:.1f}%)</td>"
                   f"<td>{escape(str(r['suggested']))} ({100 * r['prob_suggested']:.1f}%)</td></tr>"
                   for i, r in issues.iterrows())
    grouped = ''.join(f"<h4>G{j + 1}: {escape(a)}</h4>"
                      + group_row(dups[(dups['attribute'] == a) & (dups['group'] == g)])
                      for j, (a, g) in enumerate(keys.itertuples(index=False)))
    atomic_write_text(audit / 'sample.html',
                      f"<!doctype html><html><head><meta charset=utf-8><style>{STYLE}</style></head><body>"
                      f"<table><tr><th>#</th><th>photo</th><th>attribute</th><th>given</th><th>model</th></tr>{rows}"
                      f"</table>{grouped}</body></html>")
    sample = pd.concat([issues.assign(kind='label issue', item=range(1, n + 1)),
                        keys.assign(kind='near-duplicate group', item=[f'G{j + 1}' for j in range(groups)])])
    atomic_write_text(audit / 'sample.csv', sample.assign(verdict='').to_csv(index=False))
    print(f"{audit / 'sample.html'}: {n} label issues, {groups} groups")
