"""The audit's HTML page: what `python -m fashion_fastai.audit` found, with a thumbnail of every photo, for a person to
go through and decide.

One self-contained file (thumbnails inlined as JPEG data URIs, no script, no request to anywhere), so that it can be
mailed or opened from an archive; the full lists stay in the CSVs beside it.
"""
from __future__ import annotations

import base64, io
from html import escape
from pathlib import Path

import pandas as pd

from fashion_fastai.core.atomic import atomic_write_text
from fashion_fastai.data.pixels import open_rgb

THUMBNAIL = (120, 160)  # (width, height) at most: the Kaggle small photos' own size is 60x80
GROUP_PHOTOS = 2  # photos shown per label value of a group: enough to see the disagreement, not a wall of copies

STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}img{display:block;max-height:160px}
.group{display:flex;gap:8px;flex-wrap:wrap;margin:6px 0 14px}.photo{border:1px solid #ccc;padding:4px;font-size:90%}
.given{color:#a00}.suggested{color:#070}"""


def thumbnail(file) -> str:
    "An <img> of the photo, inlined; a photo that no longer reads says so instead."
    try: im = open_rgb(file)
    except Exception as e: return f'<span>unreadable: {escape(type(e).__name__)}</span>'
    im.thumbnail(THUMBNAIL)
    buf = io.BytesIO()
    im.save(buf, 'JPEG', quality=85)
    return (f'<img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}" '
            f'alt="{escape(Path(file).name)}">')


def issues_section(issues: pd.DataFrame, attribute: str, limit: int) -> str:
    "The attribute's flagged labels, worst first: photo, id, the label given and the model's answer."
    rows = issues[issues['attribute'] == attribute].head(limit)
    if rows.empty: return ''
    cells = ''.join(
        f"<tr><td>{r['rank']}</td><td>{thumbnail(r['file'])}</td><td>{escape(str(r['id']))}</td>"
        f"<td class=given>{escape(str(r['given']))} ({100 * r['prob_given']:.1f}%)</td>"
        f"<td class=suggested>{escape(str(r['suggested']))} ({100 * r['prob_suggested']:.1f}%)</td></tr>"
        for _, r in rows.iterrows())
    shown = f"the first {len(rows)} of {(issues['attribute'] == attribute).sum()}"
    return (f"<h3>{escape(attribute)}: labels the model contradicts ({shown})</h3>"
            f"<table><tr><th>rank</th><th>photo</th><th>id</th><th>label given (model's probability)</th>"
            f"<th>model's answer</th></tr>{cells}</table>")


def group_row(group: pd.DataFrame) -> str:
    "One group's photos, `GROUP_PHOTOS` per label value, and how many more the CSV holds."
    shown = group.groupby('value', sort=False).head(GROUP_PHOTOS)
    more = f"<div class=photo>and {len(group) - len(shown)} more</div>" if len(group) > len(shown) else ''
    return ("<div class=group>" + ''.join(f"<div class=photo>{thumbnail(r['file'])}{escape(str(r['id']))}<br>"
                                          f"<b>{escape(str(r['value']))}</b></div>" for _, r in shown.iterrows())
            + more + "</div>")


def groups_section(dups: pd.DataFrame, attribute: str, limit: int) -> str:
    "The attribute's near-duplicate groups whose labels differ, one row of photos per group."
    rows = dups[dups['attribute'] == attribute]
    if rows.empty: return ''
    groups = list(rows.groupby('group', sort=False))
    html = ''.join(group_row(g) for _, g in groups[:limit])
    return (f"<h3>{escape(attribute)}: near-duplicate photos labelled differently (the first {min(limit, len(groups))} "
            f"of {len(groups)} groups)</h3>{html}")


def counts_table(summary: dict) -> str:
    "Per attribute: disagreeing near-duplicate groups, and labels judged, flagged and not judged (with why)."
    head = ("<tr><th>attribute</th><th>near-duplicate groups that disagree</th><th>labels judged</th><th>flagged</th>"
            "<th>not judged: trained on</th><th>not judged: class with too few training photos</th>"
            "<th>not judged: no label</th></tr>")
    body = ''
    for a in summary['attributes']:
        d, i = summary['near_duplicates']['disagreeing'].get(a, {}), summary['label_issues'].get(a)
        judged = (f"<td>{i['judged']}</td><td>{i['flagged']}</td><td>{i['not_judged_trained_on']}</td>"
                  f"<td>{i['not_judged_class_too_rare']}</td><td>{i['not_judged_missing_label']}</td>" if i else
                  "<td colspan=5>the model has no head for it</td>")
        body += f"<tr><td>{escape(a)}</td><td>{d.get('groups', 0)}</td>{judged}</tr>"
    return f"<table>{head}{body}</table>"


def write_page(path: Path, issues: pd.DataFrame, dups: pd.DataFrame, summary: dict, limit: int = 200) -> None:
    "audit.html: the counts, then per attribute the flagged labels and the disagreeing near-duplicate groups."
    nd = summary['near_duplicates']
    sections = ''.join(issues_section(issues, a, limit) + groups_section(dups, a, limit) for a in summary['attributes'])
    html = (f"<!doctype html><html><head><meta charset=utf-8><title>Label audit of {escape(summary['data'])}</title>"
            f"<style>{STYLE}</style></head><body><h1>Label audit</h1>"
            f"<p>{summary['photos']} photos of <code>{escape(summary['data'])}</code>, judged by "
            f"<code>{escape(summary['model'])}</code>; {escape(summary['training_set'])}. Near-duplicates: embedding "
            f"cosine at least {nd['min_cosine']}, perceptual hashes at most {nd['max_hash_bits']} bits apart and "
            f"colour hashes at most {nd['max_colour_hash_bits']}: "
            f"{nd['groups']} groups of {nd['photos_in_groups']} photos.</p>{counts_table(summary)}"
            f"{sections or '<p>Nothing flagged.</p>'}</body></html>")
    atomic_write_text(Path(path), html)
