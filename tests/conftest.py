"""Shared fixtures for the loader / weights / stages tests.

- `demo_data`: the built-in demo data set at scale 0.1 (~310 rows), generated once per session.
- `make_dataset`: writes a small custom Kaggle-style folder (styles.csv + images/<id>.jpg, 60x80) from CSV lines.
- `tiny_data` / `tiny_dls`: a 4-class hand-made data set (3 top classes x 8 rows + 1 rare class of 3) and the top part's
  DataLoaders at 32x24, batch size 8: small enough to train a resnet18 for a few batches in seconds.
- `tiny_train_args`, `cli_env`, `run_module`: the smallest `python -m fashion_fastai.train` run, and running a module as
  a user does, in an environment whose demo cache and `TORCH_HOME` are the test's own.
- `export_untrained`: a stage's run-folder files (`.pkl`, `.pth`, `.json`) through the package's own `export_stage`.
"""
from __future__ import annotations

import itertools, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# One intra-op thread: the tests' tensors are tiny, and on a small shared CPU two spinning threads cost far more wall time
# than one.
torch.set_num_threads(1)

HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
COLUMNS = HEADER.split(",")
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


@pytest.fixture
def make_dataset(tmp_path):
    "A factory: `make_dataset(lines, **kw)` writes a fresh data folder under tmp_path (see `write_dataset`)."
    counter = itertools.count()
    return lambda lines, **kw: write_dataset(tmp_path / f"data{next(counter)}", lines, **kw)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from fashion_fastai.demo import generate_demo
    return generate_demo(tmp_path_factory.mktemp("demo"), scale=0.1)


@pytest.fixture(scope="session")
def demo_loaded(demo_data):
    "`load_data` on the demo set with the protocol's defaults (top-20 ranked over all rows, no holdout)."
    from fashion_fastai.data import load_data
    return load_data(demo_data)


@pytest.fixture(scope="session")
def demo_dls(demo_loaded):
    "{'top': dls, 'rare': dls} of the demo set at 32x24, no augmentation."
    from fashion_fastai.data import part_dataloaders
    return {p: part_dataloaders(demo_loaded, p, size=SMALL, bs=8, num_workers=0, augment=False, seed=0)
            for p in ("top", "rare")}


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


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny"), tiny_lines())


@pytest.fixture(scope="session")
def tiny_data(tiny_dir):
    from fashion_fastai.data import load_data
    return load_data(tiny_dir, k=3)


@pytest.fixture(scope="session")
def tiny_dls(tiny_data):
    "The tiny top part (3 classes, 18 train / 6 test images) at 32x24, bs 8: 2 training + 1 validation batch per epoch."
    from fashion_fastai.data import part_dataloaders
    return part_dataloaders(tiny_data, "top", size=SMALL, bs=8, num_workers=0, augment=False, seed=0)


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


def export_untrained(folder: Path, dls, stage="stage1", arch="resnet18", seed=0) -> Path:
    "An untrained learner on `dls` exported by `export_stage` into `folder` (all three files); returns its `.json`."
    from fashion_fastai.artifacts import export_stage
    from fashion_fastai.stages import build_learner
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    export_stage(build_learner(dls, arch, path=folder, stage=stage), folder, stage, arch, SMALL)
    return folder / f"{stage}.json"
