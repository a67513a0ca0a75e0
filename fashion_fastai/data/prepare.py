"""`python -m fashion_fastai.prepare`: a pre-resized copy of a Kaggle folder, so that training on the full-size data set
(1800x2400 JPEGs) is bound by the model, not by decoding.

Each image is decoded once, at reduced scale where JPEG allows it (Pillow's `draft`: the decoder skips the detail the
output will not have), converted to RGB exactly as training converts it (`pixels.to_rgb`), shrunk so that its longer
side is `--size` (never enlarged), and written under the same name. `styles.csv` is copied, so the cache has the Kaggle
layout and `train --data CACHE_DIR` just works.

Running it again only redoes what changed: an output keeps its source's modification time, and an image whose output
exists with that time (and was made with the same settings, recorded in `prepare.json`) is skipped. An image that does
not decode is counted, listed with its reason in `prepare_report.json`, and left out of the cache, where training then
reports it as an image that is missing. Everything else a user can get wrong (a --data that is not a Kaggle folder or
whose styles.csv training could not read, an --out that overlaps it or cannot be written) is refused before any image is
read.
"""
from __future__ import annotations

import json, os, shutil, tempfile, time, warnings
from dataclasses import dataclass, asdict
from pathlib import Path

from fastcore.parallel import parallel
from fastcore.script import call_parse
from PIL import Image

from fashion_fastai.core.atomic import atomic_write_text
from fashion_fastai.cli import command
from fashion_fastai.data.styles import data_folder_problem, load_styles
from fashion_fastai.core.errors import OptionError, DataError
from fashion_fastai.data.pixels import to_rgb

FORMAT = 'fashion_fastai.cache/1'
QUALITY = 90  # JPEG quality of the cache: visually lossless at these sizes, a third of the size of quality 100


def shrunk_size(width: int, height: int, size: int) -> tuple[int, int]:
    "(width, height) with the longer side at most `size`, aspect kept (rounded), never enlarged."
    scale = size / max(width, height)
    if scale >= 1: return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink_image(src: Path, dst: Path, size: int, quality: int = QUALITY) -> str | None:
    """Write `dst` from `src`; None on success, else why `src` was skipped (and no `dst` is left). An image already
    small enough is copied byte for byte (re-encoding it would only lose quality)."""
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f'.{dst.name}.tmp')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            with Image.open(src) as im:
                target = shrunk_size(*im.size, size)
                if target == im.size:
                    im.load()  # prove it decodes before copying it
                    shutil.copyfile(src, tmp)
                else:
                    if im.format == 'JPEG': im.draft('RGB', target)  # decode at 1/2, 1/4 or 1/8 scale, still >= target
                    rgb = to_rgb(im)
                    if rgb.size != target: rgb = rgb.resize(target, Image.Resampling.LANCZOS)
                    fmt = Image.registered_extensions().get(dst.suffix.lower(), 'JPEG')
                    rgb.save(tmp, format=fmt, **({'quality': quality} if fmt == 'JPEG' else {}))
        st = src.stat()
        # the output's time is its source's: how reruns see it is done
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, dst)
        return None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        for p in (tmp, dst): p.unlink(missing_ok=True)
        if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            return f'too large to decode safely ({e})'
        return f'{type(e).__name__}: {e}'.strip()


def _job(args) -> tuple[str, str | None]:
    "One image for a worker process: ('written' | 'skipped', reason)."
    src, dst, size, quality = args
    problem = shrink_image(src, dst, size, quality)
    return ('skipped' if problem else 'written'), problem


@dataclass
class PrepareReport:
    images: int = 0         # files in the source images/ folder
    written: int = 0        # decoded, resized (or copied) and written now
    up_to_date: int = 0     # already in the cache from an earlier run, source unchanged
    skipped: list = None    # [{'file': name, 'reason': why}] not in the cache: they did not decode
    removed: int = 0        # cache images whose source is gone, deleted
    seconds: float = 0.

    def summary(self) -> str:
        return (f"{self.images} images: {self.written} written, {self.up_to_date} already up to date, "
                f"{len(self.skipped)} skipped (do not decode), {self.removed} removed (source gone); "
                f"{self.seconds:.0f} s")


def _settings_match(out: Path, settings: dict) -> bool:
    try: return json.loads((out / 'prepare.json').read_text()) == settings
    except (OSError, ValueError): return False


def _up_to_date(src: os.DirEntry, dst_stats: dict) -> bool:
    d = dst_stats.get(src.name)
    return d is not None and d.st_size > 0 and d.st_mtime_ns == src.stat().st_mtime_ns


# what --out holds
_KINDS = {'images': 'folder', 'styles.csv': 'file', 'prepare.json': 'file', 'prepare_report.json': 'file'}


def _out_problem(out: Path) -> str | None:
    "Why the cache cannot be written at `out`, or None; proven by making its images/ folder and writing a file there."
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker == out: return f"--out {out} is a file: give a folder to create or update (a new one is made)."
    if blocker is not None:
        return f"--out {out} cannot be made: {blocker} is a file, not a folder; choose a folder elsewhere."
    for name, kind in _KINDS.items():
        p = out / name
        if p.exists() and p.is_dir() != (kind == 'folder'):
            return (f"--out {out} holds a {'file' if kind == 'folder' else 'folder'} {p} where the cache keeps its "
                    f"{name} {kind}: remove it, or choose another --out.")
    try:
        (out / 'images').mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out / 'images'): pass
    except OSError as e:
        return (f"--out {out} cannot be written ({e.strerror or type(e).__name__}): choose a folder you can write to, "
                f"or give yourself write permission on it.")
    return None


def check_folders(data: Path, out: Path) -> None:
    """Refuse, before any image is read, a --data that is not a readable Kaggle folder and an --out that would overwrite
    or contain it or cannot be written (its images/ folder is made to prove it), so a long run never fails at its
    end."""
    if problem := data_folder_problem(data, demo_hint=False): raise DataError(problem)
    load_styles(data / 'styles.csv')  # training must be able to read the copy: an unreadable one is refused now
    d, o = data.resolve(), out.resolve()
    if o == d or d in o.parents or o in d.parents:
        where = 'the --data folder' if o == d else 'inside --data' if d in o.parents else 'a parent of --data'
        raise OptionError(f"--out {out} is {where}: choose a folder outside {data}, so the original images are never "
                          "overwritten.")
    if problem := _out_problem(out): raise OptionError(problem)


def prepare(data: Path,               # Kaggle folder (styles.csv + images/)
            out: Path,                # cache folder to create or update
            size: int = 256,          # longer side of the cached images, in pixels
            workers: int | None = None,  # processes (None: one per core; 0: this process)
            quality: int = QUALITY,   # JPEG quality
            progress: bool = True,
            ) -> PrepareReport:
    """Build or update the cache; returns what was done.  Also writes `prepare.json` and `prepare_report.json` into
    `out`."""
    data, out = Path(data), Path(out)
    if size < 8: raise OptionError(f"--size must be at least 8 pixels, got {size}.")
    if not 1 <= quality <= 100: raise OptionError(f"--quality must be in 1..100, got {quality}.")
    if workers is not None and workers < 0: raise OptionError("--workers must be >= 0 (0: this process), got "
                                                              f"{workers}.")
    check_folders(data, out)
    t0 = time.time()
    settings = dict(format=FORMAT, size=size, quality=quality)
    same_settings = _settings_match(out, settings)
    (out / 'prepare.json').unlink(missing_ok=True)  # rewritten last: a half-built cache never claims to be complete
    dst_stats = {e.name: e.stat() for e in os.scandir(out / 'images') if e.is_file() and not e.name.startswith('.')}
    sources = sorted((e for e in os.scandir(data / 'images') if e.is_file() and not e.name.startswith('.')),
                     key=lambda e: e.name)
    todo = [e for e in sources if not (same_settings and _up_to_date(e, dst_stats))]
    jobs = [(Path(e.path), out / 'images' / e.name, size, quality) for e in todo]
    # a few images: no pool
    n_workers = workers if workers is not None else (os.cpu_count() or 1) if len(jobs) >= 200 else 0
    results = parallel(_job, jobs, n_workers=n_workers, chunksize=64, progress=progress and bool(jobs))
    report = PrepareReport(images=len(sources), up_to_date=len(sources) - len(jobs))
    report.written = sum(r == 'written' for r, _ in results)
    report.skipped = [{'file': e.name, 'reason': why} for e, (r, why) in zip(todo, results) if r == 'skipped']
    gone = set(dst_stats) - {e.name for e in sources}
    for name in gone: (out / 'images' / name).unlink(missing_ok=True)
    report.removed = len(gone)
    shutil.copy2(data / 'styles.csv', out / 'styles.csv')
    report.seconds = round(time.time() - t0, 1)
    atomic_write_text(out / 'prepare_report.json',
                      json.dumps(dict(source=str(data), **settings, **asdict(report)), indent=1))
    atomic_write_text(out / 'prepare.json', json.dumps(settings))
    return report


@call_parse
@command('prepare')
def main(data: Path = None,      # Kaggle folder holding styles.csv and images/ (e.g. the full-size fashion-dataset/)
         out: Path = None,       # cache folder to create or update (then: python -m fashion_fastai.train --data OUT)
         size: int = 256,        # longer side of each cached image in pixels, aspect kept, never enlarged
         workers: int = None,    # worker processes (default: one per core; 0 decodes in this process)
         quality: int = QUALITY, # JPEG quality of the cached images (1-100)
         ):
    "Make a pre-resized copy of a Kaggle folder, in the same layout, so that training decodes small images."
    if data is None or out is None: raise OptionError("both --data (the Kaggle folder) and --out (the cache) are "
                                                      "needed.")
    r = prepare(data, out, size, workers, quality)
    print(f"{out}: {r.summary()}")
    for s in r.skipped[:10]: print(f"  skipped {s['file']}: {s['reason']}")
    if len(r.skipped) > 10: print(f"  ... and {len(r.skipped) - 10} more, listed in {out / 'prepare_report.json'}")
    if not r.written + r.up_to_date:
        raise DataError(f"none of the {r.images} files in {Path(data) / 'images'} decodes as an image, so {out} has no "
                        "image to train on: check that they are the Kaggle photos (reasons in "
                        f"{out / 'prepare_report.json'}).")
    print(f"Next: python -m fashion_fastai.train --data {out}")
