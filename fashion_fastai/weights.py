"""Where a network's starting weights come from, said plainly.

torchvision downloads ImageNet weights into `$TORCH_HOME/hub/checkpoints` on first use; offline that fails deep inside
`vision_learner`.  Resolving the state_dict here first lets `--pretrained auto` fall back to scratch with a loud warning,
`--pretrained yes` fail with instructions, and every run record exactly which file it started from.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, asdict
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from fastai.vision.all import create_body

from .compat import resnet_cut

from .errors import OptionError, WeightsError


@dataclass
class WeightsInfo:
    "What a learner started from: written into config.json and results.md."
    pretrained: bool   # True when the body starts from ImageNet weights
    source: str        # a file path, or 'scratch'
    note: str = ''     # why, in words (e.g. the offline fallback)
    def to_dict(self): return asdict(self)


ARCHS = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152')


def check_arch(name: str) -> None:
    "Refuse an architecture this installation cannot build, naming those it can."
    if name not in ARCHS:
        raise OptionError(f"Unknown --arch {name!r}: choose one of {', '.join(ARCHS)}.")


def get_arch(name: str):
    "The torchvision constructor for `name`; only ResNets, whose fastai `cut` and splitter are known."
    check_arch(name)
    return getattr(torchvision.models, name)


def imagenet_checkpoint(arch: str) -> tuple[str, Path]:
    "The URL torchvision would download for `arch`'s default ImageNet weights, and the cache file it would use."
    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    return url, Path(torch.hub.get_dir()) / 'checkpoints' / Path(urlparse(url).path).name


def _offline_help(arch, cache):
    return (f"Provide the file with --weights FILE (a torchvision {arch} state_dict), or put it at {cache} "
            f"(set TORCH_HOME to choose the cache folder), or use --pretrained no to train from scratch.")


def resolve_weights(arch: str,              # torchvision ResNet name
                    pretrained: str = 'auto', # auto: ImageNet if cached or downloadable, else scratch | yes: required | no
                    weights_file: Path = None, # an explicit torchvision state_dict file (overrides the cache)
                    ) -> tuple[dict | None, WeightsInfo]:
    "The ImageNet state_dict to start from (None for scratch) and a record of where it came from."
    if weights_file is not None:
        p = Path(weights_file)
        if not p.is_file(): raise WeightsError(f"--weights {p} does not exist. " + _offline_help(arch, imagenet_checkpoint(arch)[1]))
        return torch.load(p, map_location='cpu', weights_only=True), WeightsInfo(True, str(p.resolve()), 'from --weights')
    if pretrained == 'no': return None, WeightsInfo(False, 'scratch', '--pretrained no')
    url, cache = imagenet_checkpoint(arch)
    was_cached = cache.is_file()
    try:
        sd = torch.hub.load_state_dict_from_url(url, map_location='cpu', progress=False, check_hash=True, weights_only=True)
    except Exception as e:  # offline, DNS failure, proxy, truncated download: all mean "no weights here"
        msg = f"ImageNet weights for {arch} are not cached at {cache} and could not be downloaded ({type(e).__name__}: {e})."
        if pretrained == 'yes': raise WeightsError(msg + ' ' + _offline_help(arch, cache)) from e
        warnings.warn('\n' + '!' * 78 + f"\n{msg}\nTRAINING FROM SCRATCH (--pretrained auto). {_offline_help(arch, cache)}\n"
                      + '!' * 78, stacklevel=2)
        return None, WeightsInfo(False, 'scratch', f'--pretrained auto: weights unavailable ({type(e).__name__})')
    return sd, WeightsInfo(True, str(cache), 'torchvision cache' if was_cached else f'downloaded from {url}')


def body_state_from_imagenet(arch: str, state_dict: dict) -> dict:
    """Map a torchvision state_dict onto fastai's body keys by building the torchvision model and cutting it the way
    `vision_learner` does, so the key mapping is fastai's own, and a wrong file fails with torch's key/shape message."""
    model = get_arch(arch)(weights=None)
    try: model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise WeightsError(f"The weights do not fit torchvision's {arch}: {str(e)[:500]}. "
                           f"Pass the state_dict of the same --arch.") from e
    return create_body(model, pretrained=True, cut=resnet_cut(get_arch(arch))).state_dict()
