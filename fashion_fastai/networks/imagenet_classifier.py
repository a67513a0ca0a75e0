"""The starting network as ImageNet trained it, 1000-class layer and all, kept frozen beside a run's models: where the
zero-shot path (zero_shot.py) gets its ImageNet probabilities.

Fine-tuning moves the body away from the features ImageNet's classifier reads, so the classifier is kept with its own
untouched body: one more forward pass per photo at inference, and none while training (Learning without Forgetting would
save that pass but changes training).  It reads the same photos as the run's models, with the same crop and padding and
its own normalisation, but at the scale ImageNet trained it at (`input_size`).  A run saves it once, as `imagenet.pth`
in the run folder (a plain state_dict, loaded with `weights_only=True`); each model's JSON names it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision

from fashion_fastai.networks.weights import is_timm
from fashion_fastai.core.atomic import atomic_path
from fashion_fastai.data.pixels import image_batch

FILE = 'imagenet.pth'
CLASSES = 1000


def build(arch: str) -> torch.nn.Module:
    "The arch with ImageNet's own 1000-class layer (timm or torchvision), untrained."
    if is_timm(arch):
        import timm
        return timm.create_model(arch, pretrained=False, num_classes=CLASSES)
    return getattr(torchvision.models, arch)(weights=None, num_classes=CLASSES)


def network(arch: str, state: dict | None) -> tuple[torch.nn.Module | None, str]:
    """(the frozen network in eval mode, '') from a starting state_dict, or (None, why not): training from scratch, or
    weights without the 1000-class layer (e.g. a `--weights` file of another head) leave a run without zero-shot
    answers."""
    if state is None: return None, 'the run started from scratch: no ImageNet classifier to ask'
    net = build(arch)
    try: net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:200]
        return None, f"the starting weights hold no whole ImageNet-1k classifier for {arch} ({first})"
    for p in net.parameters(): p.requires_grad_(False)
    return net.eval(), ''


def save(net: torch.nn.Module, run_dir: Path) -> Path:
    "`imagenet.pth` in the run folder, written once (the same network serves every model of the run)."
    path = Path(run_dir) / FILE
    if not path.is_file():
        with atomic_path(path) as tmp: torch.save(net.state_dict(), tmp)
    return path


def load(arch: str, path: Path) -> torch.nn.Module:
    "The frozen network from `imagenet.pth`, read without unpickling code."
    net = build(arch)
    net.load_state_dict(torch.load(path, map_location='cpu', weights_only=True))
    for p in net.parameters(): p.requires_grad_(False)
    return net.eval()


def input_size(arch: str, model_size) -> tuple[int, int]:
    """(height, width) the frozen network reads: the models' aspect, its longer side at the size ImageNet trained the
    network at (timm's pretrained config; 224 for torchvision).  A network sees objects best at the scale it learnt
    them (an even-year probe, bench/imagenet_input.py); the models' own smaller input is cheaper."""
    side = 224
    if is_timm(arch):
        import timm.models
        cfg = timm.models.get_pretrained_cfg(arch)
        if cfg is not None and cfg.input_size: side = int(cfg.input_size[-1])
    h, w = model_size
    scale = side / max(h, w)
    return int(round(h * scale)), int(round(w * scale))


class Scorer:
    """ImageNet probabilities of photos from the frozen network, decoded at its `size` with the same crop, padding and
    resize as the models (pixels.py) and its normalisation.  With `remember` (training), kept per file, so that a run's
    models, whose test photos overlap, ask once; inference over a catalogue keeps nothing."""
    def __init__(self, net: torch.nn.Module, size, mean, std, device='cpu', bs: int = 64, remember: bool = False,
                 channels_last: bool = False):  # the memory layout the run's models use (config.py resolves it)
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.net = net.to(device, memory_format=self.layout)
        self.size, self.bs, self.device = tuple(size), bs, torch.device(device)
        stat = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self.mean, self.std, self.remember, self.seen = stat(mean), stat(std), remember, {}

    def probs(self, files) -> np.ndarray:
        "[N, 1000] float32 ImageNet probabilities of `files`."
        files = [str(f) for f in files]
        todo = [f for f in dict.fromkeys(files) if f not in self.seen]
        new = {}
        with torch.inference_mode():
            for i in range(0, len(todo), self.bs):
                chunk = todo[i:i + self.bs]
                x = torch.from_numpy(image_batch(chunk, self.size)).to(self.device).float().div_(255)
                x = ((x - self.mean) / self.std).contiguous(memory_format=self.layout)
                new.update(zip(chunk, self.net(x).float().softmax(1).cpu().numpy()))
        if self.remember: self.seen.update(new)
        return (np.stack([new[f] if f in new else self.seen[f] for f in files]) if files else
                np.zeros((0, CLASSES), np.float32))
