"""Reading the Kaggle "Fashion Product Images" layout into one DataFrame, and the protocol's DataBlocks.

Data flows one way: `load_styles` (robust CSV parse) -> `attach_images` (drop rows without a decodable image, counted)
-> `assign_protocol` (year-parity split, top-k parts ranked over `styles.csv`) -> `part_dataloaders` (one DataBlock per
part, vocab = sorted union of that part's train and test classes). Nothing here trains or evaluates.
"""
from __future__ import annotations

import csv, io, os, re
from dataclasses import dataclass, field, asdict
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_fastai.core.errors import DataError
from fashion_fastai.core.schema import ATTRIBUTES, COLUMNS, IMAGE_SIZE, LABEL, MISSING_CODE, REQUIRED
from fashion_fastai.core.schema import image_id  # noqa: F401  still `fashion_fastai.data.image_id` (data/__init__)
from fashion_fastai.data.holdout import RANDOM, hold_out
from fashion_fastai.core.models import ALL, PARTS, TOP, RARE
from fashion_fastai.core.compat import PadResize, TrainOnlyAffine
from fashion_fastai.data.images import ProductImageBlock, check_images
from fastai.vision.all import (DataBlock, CategoryBlock, ColReader, AffineCoordTfm, aug_transforms, Normalize,
                               imagenet_stats, Categorize, Category, TensorCategory, TransformBlock)



@dataclass
class LoadReport:
    "What loading did to the rows of `styles.csv`: nothing is dropped without being counted here."
    styles_csv: str = ''
    lines_read: int = 0                                  # data lines in the file (header excluded)
    rows_parsed: int = 0                                 # rows kept after parsing (incl. recovered ones)
    recovered_commas: list = field(default_factory=list) # ids whose name held commas (extra fields re-joined)
    malformed: list = field(default_factory=list)        # {"line": n, "reason": ...} for lines that could not be parsed
    duplicate_ids: list = field(default_factory=list)    # ids seen again after their first row (later rows skipped)
    undecodable_lines: int = 0                           # lines with non-UTF-8 bytes (replaced by U+FFFD, kept)
    missing_image: list = field(default_factory=list)    # ids whose images/<id>.jpg does not exist
    empty_image: list = field(default_factory=list)      # ids whose image file has zero bytes
    unreadable_image: list = field(default_factory=list) # {"id", "reason"}: truncated, not an image, too large...
    no_year: list = field(default_factory=list)          # ids without a numeric year: kept, but in neither split
    missing_attribute: dict = field(default_factory=dict) # {attribute: split rows without it}: kept for the other heads
    usable: int = 0                                      # rows with an image, i.e. the rows of the returned frame

    def summary(self) -> str:
        "One human line for logs."
        return (f"{self.lines_read} rows in {self.styles_csv}: {len(self.recovered_commas)} recovered (commas in "
                f"name), {len(self.malformed)} malformed skipped, {len(self.duplicate_ids)} duplicate ids skipped, "
                f"{len(self.missing_image)} without image skipped, {len(self.empty_image)} empty image skipped, "
                f"{len(self.unreadable_image)} unreadable image skipped, "
                f"{len(self.no_year)} without a usable year (in neither split); {self.usable} usable images"
                + ''.join(f"; {n} without {a} (kept, left out of that head)"
                          for a, n in self.missing_attribute.items()))

    def to_dict(self) -> dict: return asdict(self)


def _decode(raw: bytes, report: LoadReport) -> str:
    """UTF-8 (with or without BOM), or UTF-16 when it starts with a UTF-16 BOM (Excel's and pandas' 'unicode' exports);
    undecodable bytes become U+FFFD and are counted rather than failing the whole file."""
    if raw[:2] in (b'\xff\xfe', b'\xfe\xff'):
        try: return raw.decode('utf-16')
        except UnicodeDecodeError: pass
    try: return raw.decode('utf-8-sig')
    except UnicodeDecodeError:
        text = raw.decode('utf-8-sig', errors='replace')
        report.undecodable_lines = sum('\ufffd' in l for l in text.splitlines())
        return text


def _fields(line: str) -> list:
    """The fields of one physical line.  Each line is parsed on its own, so a name that opens a quote it never closes
    cannot swallow the lines after it into one field (the whole rest of the file, silently)."""
    line = line.rstrip('\r\n')
    if '"' not in line: return line.split(',') if line else []  # what the csv reader gives, twice as fast
    return next(csv.reader([line]), [])


_INT64_MAX = np.iinfo('int64').max


def _row_problem(rec: dict, recovered: bool) -> str | None:
    "Why a row of the right width cannot be used, or None."
    ident = rec['id'].strip()
    if not re.fullmatch(r'[0-9]+', ident): return f'id {ident!r} is not a non-negative integer'
    if int(ident) > _INT64_MAX: return f'id {ident} is too large (beyond 64-bit integers)'
    if not rec[LABEL].strip(): return 'empty articleType'
    year = rec['year'].strip()
    if recovered and year and not re.fullmatch(r'[0-9]+(\.[0-9]*)?', year):
        return (f'extra fields, and year {year!r} is not a number: the commas are not (only) in productDisplayName, '
                f'so the columns cannot be told apart')
    return None


def _header_problem(csv_path: Path, header: list) -> str | None:
    "What is wrong with the header line, for the error message, or None."
    dup = sorted({h for h in header if h and header.count(h) > 1})
    if dup: return f"{csv_path}: column(s) {dup} appear more than once in its header {header}; keep one of each."
    missing = [c for c in REQUIRED if c not in header]
    if not missing: return None
    near = [h for c in missing for h in header if h.lower() == c.lower()]
    hints = [f"column names are case-sensitive: found {', '.join(map(repr, near))}"] if near else []
    seps = [s for s in ';\t|' if len(header) == 1 and s in header[0]]
    if seps: hints.append(f"the header is a single column: the file must be comma-separated, not {seps[0]!r}-separated")
    return (f"{csv_path} lacks required column(s) {missing}; its header is {header}"
            + (f" ({'; '.join(hints)})" if hints else '') + f". Expected the Kaggle columns {','.join(COLUMNS)}.")


def data_folder_problem(data_dir: Path,           # the folder given as --data
                        option: str = '--data',   # the option that named it, for the message
                        demo_hint: bool = True,   # say that leaving the option out uses the built-in demo data
                        ) -> str | None:
    """Why `data_dir` is not a Kaggle folder (styles.csv beside images/<id>.jpg), with where the right one is, or None:
    the one check of a data folder, made before anything is read (`TrainConfig`, `load_data`, `prepare`)."""
    data_dir = Path(data_dir)
    images = data_dir / 'images'
    if (data_dir / 'styles.csv').is_file():
        if not images.is_dir():
            return (f"{option} {data_dir} has styles.csv but no images/ folder beside it: the Kaggle layout keeps "
                    f"every product photo as images/<id>.jpg next to styles.csv; unzip the images there.")
        if not any(e.is_file() and e.name.lower().endswith('.jpg') for e in os.scandir(images)):
            return (f"{option} {data_dir}: its images/ folder holds no .jpg file, so no product has a photo to train "
                    f"on; unzip the Kaggle images into {images}.")
        return None
    if data_dir.is_file():
        fix = (f"give the folder holding it: {option} {data_dir.parent}" if data_dir.name == 'styles.csv' else
               "unzip it and give the folder holding styles.csv and images/" if data_dir.suffix.lower() == '.zip' else
               "give the Kaggle folder holding styles.csv and images/")
        return f"{option} {data_dir} is a file, not a folder: {fix}."
    hint = ('that folder does not exist' if not data_dir.is_dir() else
            next((f'it has one in {c.parent}: try {option} {c.parent}' for c in sorted(data_dir.glob('*/styles.csv'))),
                 ''))
    return (f"{option} {data_dir} has no styles.csv{' (' + hint + ')' if hint else ''}: it must be the Kaggle folder "
            f"holding styles.csv and images/ (e.g. fashion-product-images-small/)"
            + (f"; omit {option} for the built-in demo data." if demo_hint else "."))


def load_styles(csv_path: Path,   # the Kaggle `styles.csv`
                ) -> tuple[pd.DataFrame, LoadReport]:
    """Parse `styles.csv` line by line with the stdlib reader, because pandas cannot tell which lines had too many or
    too few fields: the Kaggle file is unquoted and ~20 product names contain commas. Extra fields can only belong to
    the last column (`productDisplayName`), so they are re-joined; lines with too few fields are ambiguous and skipped
    (counted)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path} not found: --data must be the Kaggle folder holding styles.csv and images/ "
                        f"(e.g. fashion-product-images-small/), or omit --data to use the built-in demo data.")
    report = LoadReport(styles_csv=str(csv_path))
    text = _decode(csv_path.read_bytes(), report)
    lines = io.StringIO(text, newline='')  # iterates physical lines ending in \n, \r\n or \r, like the csv module
    header = _fields(next(lines, ''))
    if not header or not any(h.strip() for h in header):
        raise DataError(f"{csv_path} is empty: expected a header line with columns {','.join(COLUMNS)}.")
    header = [h.strip() for h in header]
    problem = _header_problem(csv_path, header)
    if problem: raise DataError(problem)
    n, name_col = len(header), header.index('productDisplayName') if 'productDisplayName' in header else None
    records, seen = [], set()
    for lineno, line in enumerate(lines, start=2):
        fields = _fields(line)
        if not fields or not any(f.strip() for f in fields): continue   # blank line
        report.lines_read += 1
        recovered = len(fields) > n
        if recovered:
            if name_col != n - 1:
                report.malformed.append({'line': lineno, 'reason': f'{len(fields)} fields, expected {n}'}); continue
            fields = fields[:n - 1] + [','.join(fields[n - 1:])]
        elif len(fields) < n:
            report.malformed.append({'line': lineno, 'reason': f'{len(fields)} fields, expected {n}'}); continue
        rec = dict(zip(header, fields))
        why = _row_problem(rec, recovered)
        if why: report.malformed.append({'line': lineno, 'reason': why}); continue
        rec['id'] = str(int(rec['id']))  # '01', ' 1' and '1' are the same id
        if rec['id'] in seen: report.duplicate_ids.append(int(rec['id'])); continue
        seen.add(rec['id'])
        if recovered: report.recovered_commas.append(int(rec['id']))
        records.append(rec)
    df = pd.DataFrame.from_records(records, columns=header)
    df['id'] = df['id'].astype('int64')
    df[LABEL] = df[LABEL].str.strip()
    year = pd.to_numeric(df['year'], errors='coerce')
    df['year'] = year.where(year == year.round()).astype('Int64')  # '2012.5' is no year, not a crash
    report.no_year = df.loc[df['year'].isna(), 'id'].tolist()
    report.rows_parsed = len(df)
    if df.empty and not report.lines_read:
        raise DataError(f"{csv_path} has a header but no parseable rows (no data lines): it must hold one line per "
                        f"product under the header; is it the Kaggle styles.csv?")
    if df.empty:
        first = '; '.join(f"line {m['line']}: {m['reason']}" for m in report.malformed[:3])
        raise DataError(f"{csv_path} has a header but no parseable rows: all {report.lines_read} data lines were "
                        f"skipped ({len(report.malformed)} malformed, {len(report.duplicate_ids)} duplicate ids; "
                        f"{first}{'; ...' if len(report.malformed) > 3 else ''}). Each line needs the {n} columns of "
                        f"its header {','.join(header)}, comma-separated, with an integer id and an articleType.")
    return df, report


def attach_images(df: pd.DataFrame,  # rows from `load_styles`
                  images_dir: Path,  # the folder holding `<id>.jpg`
                  report: LoadReport,
                  # decode every image up front (seconds for the small set) and skip those that fail
                  check: bool = True, ) -> pd.DataFrame:
    """Add the `file` column and drop rows whose image is missing, empty or undecodable, listing their ids: one
    directory scan, no per-row stat, and one full decode so that no bad file is met in the middle of an epoch."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"{images_dir} is not a folder: the Kaggle layout has images/<id>.jpg next to styles.csv.")
    sizes = {e.name: e.stat().st_size for e in os.scandir(images_dir) if e.is_file()}
    names = df['id'].astype(str) + '.jpg'
    size = names.map(sizes)
    report.missing_image = df.loc[size.isna(), 'id'].tolist()
    report.empty_image = df.loc[size.eq(0), 'id'].tolist()
    keep = size.gt(0)
    out = df[keep].copy()
    root = str(images_dir.resolve())
    out['file'] = [os.path.join(root, n) for n in names[keep]]
    if check:
        problems = check_images(out['file'])
        bad = out['file'].isin(problems)
        report.unreadable_image = [{'id': int(i), 'reason': problems[f]}
                                   for i, f in zip(out.loc[bad, 'id'], out.loc[bad, 'file'])]
        out = out[~bad]
    report.usable = len(out)
    return out.reset_index(drop=True)


def year_split(year: pd.Series) -> pd.Series:
    "The protocol's split: even year -> train, odd -> test, no usable year -> none."
    out = pd.Series('none', index=year.index, dtype=object)
    known = year.notna()
    out[known] = np.where(year[known].astype('int64') % 2 == 0, 'train', 'test')
    return out


def top_classes(styles: pd.DataFrame,  # all parsed rows of styles.csv (before images are checked)
                k: int = 20,           # how many classes form the "top" part
                rank_on: str = 'all',  # `all` rows of styles.csv (the protocol) or `train` (even-year) rows only
                ) -> list:
    """Rank classes over rows of `styles.csv`, not over rows with an image: that is how the protocol finds its top-20
    (so "Perfume and Body Mist" is in it with no train image), and it keeps the parts stable when images are
    withheld."""
    rows = styles if rank_on == 'all' else styles[year_split(styles['year']) == 'train']
    counts = rows[LABEL].value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))  # ties broken by name: deterministic
    return [c for c, _ in ranked[:k]]


def assign_protocol(df: pd.DataFrame,    # usable rows (with `file`)
                    top: list,           # the top-k classes from `top_classes`
                    holdout: float = 0., # fraction of even-year rows moved to `valid` for tuning (0: validate on test)
                    seed: int = 42,      # seed for the holdout draw
                    by: tuple = (RANDOM,), # holdout rules (holdout.RULES): what the held photos differ from training by
                    ) -> pd.DataFrame:
    """Add `split` (train|valid|test|none), `part` (top|rare) and `held_by` (the holdout rule that moved a row to
    `valid`, else ''); each rule draws per class, so no part is left out (holdout.py).  A part whose classes are each
    too small for their share to round to a photo (a small catalogue's rare part) still holds one out, from its class
    with the most even-year photos, as long as that class keeps one to train on and the part two (what training
    needs)."""
    df = df.copy()
    df['split'] = year_split(df['year'])
    df['part'] = np.where(df[LABEL].isin(top), TOP, RARE)
    df['held_by'] = ''
    if holdout:
        train = df[df['split'] == 'train']
        df.loc[train.index, 'held_by'] = hold_out(train, LABEL, holdout, by, seed)
        df.loc[df['held_by'] != '', 'split'] = 'valid'
        for part in (TOP, RARE):
            rows = df[(df['part'] == part) & df['split'].isin(['train', 'valid'])]
            counts = rows[rows['split'] == 'train'][LABEL].value_counts(sort=True)
            if (rows['split'] == 'valid').any() or not len(counts) or counts.iloc[0] < 2 or counts.sum() < 3: continue
            biggest = rows[(rows['split'] == 'train') & (rows[LABEL] == counts.index[0])]
            df.loc[biggest.sample(n=1, random_state=seed).index, ['split', 'held_by']] = ['valid', RANDOM]
    return df


def part_vocab(df: pd.DataFrame, part: str) -> list:
    """Sorted union of the part's classes over train, valid and test rows, so a class seen in one split only keeps an
    index."""
    rows = df[((df['part'] == part) | (part == ALL)) & df['split'].isin(['train', 'valid', 'test'])]
    return sorted(rows[LABEL].unique().tolist())


class SplitColumn:
    """DataBlock splitter by each item's `split` field (FuncSplitter would iterate a DataFrame's column names, not its
    rows)."""
    def __init__(self, valid: str = 'test'): self.valid = valid
    def __call__(self, items):
        roles = [r['split'] for r in items]
        return [i for i, r in enumerate(roles) if r == 'train'], [i for i, r in enumerate(roles) if r == self.valid]


def as_items(rows: pd.DataFrame, attributes=()) -> list:
    """DataBlock items as plain dicts: fastai would index a DataFrame row by row with `iloc`, several ms per image on a
    small CPU."""
    return rows[['file', LABEL, 'split', *attributes]].to_dict('records')


def is_missing(value) -> bool:
    "An empty field of styles.csv, or a missing value (None, NaN) in a frame built elsewhere."
    return value is None or (not isinstance(value, str) and bool(pd.isna(value))) or not str(value).strip()


class AttributeCategorize(Categorize):
    """fastai's `Categorize`, but a missing value becomes `MISSING_CODE` (left out of its head's loss) instead of a
    KeyError."""
    def encodes(self, o): return TensorCategory(MISSING_CODE) if is_missing(o) else super().encodes(o)
    def decodes(self, o): return Category('') if int(o) == MISSING_CODE else super().decodes(o)


def AttributeBlock(vocab: list) -> TransformBlock:
    "A `CategoryBlock` over a fixed vocab whose missing values are kept, as `MISSING_CODE`."
    return TransformBlock(type_tfms=AttributeCategorize(vocab=vocab, sort=False))


def attribute_vocab(df: pd.DataFrame, attribute: str) -> list:
    "Sorted union of the attribute's values over every split (both parts: the heads of both stages share it)."
    values = df.loc[df['split'].isin(['train', 'valid', 'test']), attribute]
    return sorted({str(v).strip() for v in values if not is_missing(v)})


def item_tfms(size=IMAGE_SIZE):
    "Per-image resize shared by training and weights-only inference; padding keeps whole products in odd-sized images."
    return [PadResize(size)]


def batch_tfms(augment: bool = True, stats=imagenet_stats):
    """GPU-able batch augmentation suited to centred product shots (flip, small rotation/zoom, lighting), then the
    weights' own normalisation (`stats`: mean, std), always: `vision_learner(pretrained=False)` would add none, and
    scratch and pretrained runs must match."""
    augs = aug_transforms(max_rotate=5., max_zoom=1.1, max_warp=0., max_lighting=0.2) if augment else []
    augs = [TrainOnlyAffine.like(t) if isinstance(t, AffineCoordTfm) else t for t in augs]
    return [*augs, Normalize.from_stats(*stats)]


def part_datablock(vocab: list,            # the part's union vocab
                   size=IMAGE_SIZE,        # (height, width) fed to the model
                   valid: str = 'test',    # which split fastai validates on: `test` (protocol) or `valid` (holdout)
                   augment: bool = True,   # batch augmentation while training
                   stats=imagenet_stats,   # (mean, std) of the starting weights' normalisation
                   # {other attribute: its vocab}: one more target each, before the article type
                   attributes: dict = None, ) -> DataBlock:
    "The image, then one target per attribute, the article type last (see attributes.py)."
    attributes = attributes or {}
    return DataBlock(blocks=(ProductImageBlock(), *map(AttributeBlock, attributes.values()),
                             CategoryBlock(vocab=vocab)),
                     get_x=ColReader('file'), get_y=[*map(ColReader, attributes), ColReader(LABEL)], n_inp=1,
                     splitter=SplitColumn(valid), item_tfms=item_tfms(size), batch_tfms=batch_tfms(augment, stats))


@dataclass
class FashionData:
    "Everything the stages need, loaded once: the usable rows with split/part, the parts' vocabs and the load report."
    frame: pd.DataFrame
    vocabs: dict
    report: LoadReport
    top: list
    attributes: dict = field(default_factory=dict)  # {other attribute: its vocab}, in the order of --attributes

    def part(self, part: str) -> pd.DataFrame:
        """The part's rows that take part in training or evaluation (rows without a year are in no split); `all`: every
        part's."""
        f = self.frame
        return f[((f['part'] == part) | (part == ALL)) & (f['split'] != 'none')].reset_index(drop=True)

    def train_counts(self, part: str, column: str = LABEL) -> dict:
        rows = self.part(part)
        return rows.loc[rows['split'] == 'train', column].value_counts().to_dict()


def load_data(data_dir: Path,           # Kaggle folder: styles.csv + images/
              k: int = 20,              # size of the top part
              rank_on: str = 'all',     # rank classes over `all` rows or `train` rows
              holdout: float = 0.,      # even-year fraction carved out for validation
              seed: int = 42,           # holdout seed
              holdout_by: tuple = (RANDOM,), # holdout rules (holdout.RULES)
              attributes=(),            # other styles.csv columns to predict (ATTRIBUTES)
              ) -> FashionData:
    "The protocol's rows, parts and vocabs from a Kaggle folder, the folder checked before anything is read."
    data_dir = Path(data_dir)
    if problem := data_folder_problem(data_dir): raise DataError(problem)
    styles, report = load_styles(data_dir / 'styles.csv')
    top = top_classes(styles, k, rank_on)
    df = assign_protocol(attach_images(styles, data_dir / 'images', report), top, holdout, seed, holdout_by)
    vocabs = {p: part_vocab(df, p) for p in (*PARTS, ALL)}
    return FashionData(df, vocabs, report, top, check_attributes(df, attributes, report, data_dir / 'styles.csv'))


def check_attributes(df: pd.DataFrame, attributes, report: LoadReport, csv_path: Path) -> dict:
    "{attribute: vocab}, after checking each can be learnt; rows without it are counted in `report`, not dropped."
    absent = [a for a in attributes if a not in df.columns]
    if absent:
        there = [a for a in ATTRIBUTES if a in df.columns]
        raise DataError(f"{csv_path} has no column(s) {absent} for --attributes; it has "
                        f"{', '.join(there) or 'none of them'}.")
    vocabs = {}
    for a in attributes:
        df[a] = df[a].map(lambda v: v.strip() if isinstance(v, str) else v)  # as the article type is
        in_split = df['split'] != 'none'
        report.missing_attribute[a] = int((in_split & df[a].map(is_missing)).sum())
        vocabs[a] = attribute_vocab(df, a)
        if len(vocabs[a]) < 2:
            raise DataError(f"--attributes {a}: every image with a split has "
                            f"{'the same value ' + repr(vocabs[a][0]) if vocabs[a] else 'no value'} for {a} in "
                            f"{csv_path}, so there is nothing to learn; leave {a} out of --attributes.")
    return vocabs


def part_dataloaders(data: FashionData,
                     part: str,               # `top`, `rare` or `all` (models.py: a model's part)
                     size=IMAGE_SIZE,         # (height, width)
                     bs: int = 32,            # batch size (the CLI's default)
                     num_workers: int = None, # DataLoader workers (None: fastai's default)
                     augment: bool = True,    # batch augmentation
                     seed: int = None,        # shuffle seed
                     stats=imagenet_stats,    # (mean, std) of the starting weights' normalisation (`WeightsInfo.stats`)
                     ):
    "Train on the part's even years; validate on the test split, or on the holdout when one was carved."
    rows = data.part(part)
    if part == RARE and not len(rows):
        raise DataError(f"The top-{len(data.top)} part holds every class with images, so nothing is left for stage "
                        f"two: use a --topk below {len(data.top)}, or --epochs2 0 to train stage one only.")
    n_train = int((rows['split'] == 'train').sum())
    if n_train < 2:  # BatchNorm cannot train on a batch of one
        raise DataError(f"The {part} part has {n_train} training image(s) after loading ({len(rows)} rows with a "
                        f"split); training needs at least 2: check --topk/--rank-on and the load report"
                        f"{', or pass --epochs2 0' if part == 'rare' else ''}.")
    valid = 'valid' if (data.frame['split'] == 'valid').any() else 'test'
    if not (rows['split'] == valid).any():
        raise DataError(f"The {part} part has no {'holdout' if valid == 'valid' else 'test'} image to validate on: " + (
            f"its {n_train} even-year photos are too few to spare one; raise --holdout, or pass --holdout 0 to "
            "validate on the test split (the run then has no calibration and no zero-shot "
            "answers)" if valid == 'valid' else
            'check the years in styles.csv') + '.')
    bs = min(bs, n_train)  # fastai drops the last partial batch: a tiny part would train on nothing
    return part_datablock(data.vocabs[part], size, valid, augment, stats, data.attributes).dataloaders(
        as_items(rows, data.attributes), bs=bs, seed=seed,
        num_workers=default_workers() if num_workers is None else num_workers)


def default_workers() -> int:
    """Worker processes for decoding: on a machine with few cores and no GPU they compete with the model for the same
    cores (on 2 cores 0 workers trained fastest: BENCHMARKS.md), so decode in the main process there; fastai's default
    elsewhere."""
    import torch
    from fastai.vision.all import defaults
    return defaults.cpus if torch.cuda.is_available() or (os.cpu_count() or 1) > 4 else 0


def eval_rows(data: FashionData, part: str, split: str = 'test') -> pd.DataFrame:
    """The part's odd-year rows in a fixed order: the evaluation set whatever fastai validated on (`split` 'valid': its
    holdout's, where calibration and the zero-shot gate are fitted)."""
    rows = data.part(part)
    return rows[rows['split'] == split].sort_values('id').reset_index(drop=True)
