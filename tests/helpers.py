"""Plain helpers and constants the tests share (conftest.py keeps only the fixtures): data sets written from CSV lines,
the tiny data set and `train` arguments, running a module as a user does, and exporting an untrained model.

- `write_dataset` / `style_line` / `save_image`: a small Kaggle-style folder (styles.csv + images/<id>.jpg, 60x80) from
  unquoted CSV lines, like the Kaggle file.
- `tiny_lines`, `TINY_TOP`, `TINY_RARE`: a 4-class hand-made data set (3 top classes x 8 rows + 1 rare class of 3).
- `tiny_train_args`, `cli_env`, `run_module`: the smallest `python -m fashion_fastai.train` run, and running a module as
  a user does, in an environment whose demo cache and `TORCH_HOME` are the test's own.
- `export_untrained`: a stage's run-folder files (`.pkl`, `.pth`, `.json`) through the package's own `export_stage`.
"""
from __future__ import annotations

import os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fashion_fastai.core.schema import COLUMNS

HEADER = ",".join(COLUMNS)  # the Kaggle styles.csv header line
SMALL = (32, 24)  # (height, width) fed to the models in these tests
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-product-images-small"


def style_line(ident, article="Tshirts", year=2012, name=None, gender="Men") -> str:
    "One unquoted styles.csv line, like the Kaggle file; `year=None` writes an empty year."
    name = f"Brand {gender} Black {article}" if name is None else name
    return ",".join([str(ident), gender, "Apparel", "Topwear", article, "Black", "Summer",
                     "" if year is None else str(year), "Casual", name])


def save_image(path: Path, mode: str = "RGB", seed: int = 0) -> Path:
    """A 60x80 image saved in PIL `mode`: JPEG for RGB/L/CMYK, PNG for the others (e.g. RGBA, P), whatever the name says
    (PIL identifies files by content, so a PNG named .jpg is how such files show up in scraped data sets)."""
    rng = np.random.default_rng(seed)
    arr = np.full((80, 60, 3), 245, np.uint8)
    arr[15:65, 12:48] = rng.integers(0, 200, 3, dtype=np.uint8)  # a coloured "product" box
    arr = np.clip(arr.astype(np.int16) + rng.integers(-6, 7, arr.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode == "P": img = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    elif mode != "RGB": img = img.convert(mode)
    img.save(path, "JPEG" if mode in ("RGB", "L", "CMYK") else "PNG")
    return path


def _line_id(line):
    head = (line.decode("latin-1") if isinstance(line, bytes) else line).split(",")[0]
    return int(head) if head.strip().isdigit() else None


def write_dataset(root: Path,
                  lines: list,             # data lines: str (written UTF-8) or bytes (written as they are)
                  images=None,             # ids that get an image; default: every line whose id is an integer
                  empty=(),                # ids whose image file is written with zero bytes
                  modes: dict = None,      # {id: PIL mode} for images other than RGB
                  header: str = HEADER,
                  eol: str = "\n",
                  bom: bool = False) -> Path:
    "Write `root/styles.csv` and `root/images/`; returns `root`."
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    body = (header + eol).encode("utf-8") + b"".join(
        (l if isinstance(l, bytes) else l.encode("utf-8")) + eol.encode() for l in lines)
    (root / "styles.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + body)
    ids = [i for i in map(_line_id, lines) if i is not None] if images is None else list(images)
    modes = modes or {}
    for i in dict.fromkeys(ids):
        if i not in empty: save_image(root / "images" / f"{i}.jpg", modes.get(i, "RGB"), seed=i)
    for i in empty:
        (root / "images" / f"{i}.jpg").write_bytes(b"")
    return root


def distinctive_resnet_state(arch="resnet18", seed=123):
    "A torchvision state_dict unlike any fresh init: seeded weights, and BN running stats that are not 0/1."
    import torch, torchvision
    torch.manual_seed(seed)
    sd = getattr(torchvision.models, arch)(weights=None).state_dict()
    g = torch.Generator().manual_seed(seed)
    for k, v in sd.items():
        if k.endswith("running_mean"): sd[k] = torch.randn(v.shape, generator=g)
        elif k.endswith("running_var"): sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("num_batches_tracked"): sd[k] = torch.tensor(17)
    return sd


TINY_TOP = ("Belts", "Caps", "Socks")  # 6 even-year + 2 odd-year rows each
TINY_RARE = "Ties"                     # 2 even + 1 odd


def tiny_lines():
    lines, ident = [], 100
    for c in TINY_TOP:
        for y in [2012, 2014] * 3 + [2011, 2013]:
            lines.append(style_line(ident, c, y)); ident += 1
    for y in (2012, 2016, 2013):
        lines.append(style_line(ident, TINY_RARE, y)); ident += 1
    return lines


TINY_TRAIN = dict(arch="resnet18", size="32x24", bs=16, epochs=1, epochs2=1, epochs_all=0, pretrained="no",
                  demo_scale=0.1, lr=1e-3, lr2=1e-3)


def tiny_train_args(**changes) -> list:
    "Command-line arguments of the smallest train run on the demo data, with `changes` (option=value) applied."
    return [a for k, v in {**TINY_TRAIN, **changes}.items() for a in (f"--{k.replace('_', '-')}", str(v))]


def cli_env(tmp: Path) -> dict:
    "This environment, with the demo cache and TORCH_HOME under `tmp` (nothing shared with the user's) and one thread."
    return {**os.environ, "FASHION_FASTAI_CACHE": str(tmp / "cache"), "TORCH_HOME": str(tmp / "torch"),
            "OMP_NUM_THREADS": "1"}


def run_module(mod, *args, env=None, cwd=None, check=True, timeout=900):
    "Run `python -m mod args` with stdout piped (not a TTY), as CI and nohup do."
    p = subprocess.run([sys.executable, "-m", mod, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=timeout)
    if check and p.returncode != 0: raise AssertionError(f"{mod} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def sigkill_when(cmd: list, ready, waiting_for: str, env=None, poll: float = 0.05, timeout: float = 600) -> str:
    "Start `cmd`, SIGKILL it as soon as `ready()` holds (a real kill, mid-work), and return what it printed."
    proc = subprocess.Popen(list(map(str, cmd)), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + timeout
        while not ready():
            assert proc.poll() is None, f"it ended before {waiting_for}:\n{proc.stdout.read()}"
            assert time.time() < deadline, f"no {waiting_for} after {timeout:.0f} s"
            time.sleep(poll)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return proc.stdout.read()


def export_untrained(folder: Path, dls, stage="stage1", arch="resnet18", seed=0, attributes=None) -> Path:
    """An untrained learner on `dls` exported by `export_stage` into `folder` (all three files); returns its `.json`.
    `attributes` ({attribute: vocab}): a head each beside the article type's."""
    from fashion_fastai.training.artifacts import export_stage
    from fashion_fastai.training.stages import build_learner
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    weights = (2., *(.5 for _ in attributes)) if attributes else ()
    learn = build_learner(dls, arch, path=folder, stage=stage, attributes=attributes, attribute_weights=weights)
    export_stage(learn, folder, stage, arch, SMALL)
    return folder / f"{stage}.json"


# the hand-made prediction set of test_scores, test_report and test_plots (their `preds` and `table` fixtures)
VOCAB = ["a", "b", "c", "d", "e", "f"]
TRAIN = {"a": 10, "b": 5, "d": 3, "e": 2, "f": 1, "not_in_vocab": 99}  # c missing => unseen
SCORES = [0.40, 0.25, 0.15, 0.10, 0.06, 0.04]  # strictly decreasing: no ties for topk
CASES = [(0, 0), (0, 5), (1, 1), (1, 0), (2, 5), (4, 4), (5, 0)]  # (target, rank of target)


def score_row(target, rank):
    "Scores where `target` sits at `rank`; the other classes fill the remaining ranks in index order."
    order = [c for c in range(len(VOCAB)) if c != target]
    order.insert(rank, target)
    row = torch.empty(len(VOCAB))
    row[torch.tensor(order)] = torch.tensor(SCORES)
    return row
