"""The modules' names before the package was grouped into subpackages, mapped to where they are now, so that a learner
exported before (a `.pkl` names the modules of its classes: `fashion_fastai.compat.PadResize`, ...) and code written
against the old names still import.  Nothing is imported until an old name is asked for."""
from __future__ import annotations

import importlib, importlib.abc, importlib.util, sys

MOVED = {  # old module (below fashion_fastai) -> where it is now; `data` and `answering` are packages of those names
    'errors': 'core.errors', 'atomic': 'core.atomic', 'cache': 'core.cache', 'models': 'core.models',
    'compat': 'core.compat', 'holdout': 'data.holdout', 'images': 'data.images',
    'pixels': 'data.pixels', 'demo': 'data.demo', 'weights': 'networks.weights',
    'lite_weights': 'networks.lite_weights',
    'attributes': 'networks.attributes', 'imagenet_classifier': 'networks.imagenet_classifier',
    'optimizer': 'networks.optimizer', 'config': 'training.config', 'run': 'training.run', 'stages': 'training.stages',
    'checkpoint': 'training.checkpoint', 'distributed': 'training.distributed', 'artifacts': 'training.artifacts',
    'evaluate': 'evaluation.evaluate', 'scores': 'evaluation.scores', 'tta': 'evaluation.tta',
    'calibrate': 'evaluation.calibrate', 'calibration': 'answering.temperature',
    'zero_shot': 'answering.zero_shot', 'report': 'reporting.report', 'plots': 'reporting.plots',
    'audit_page': 'catalogue.audit_page',
}


def install() -> None:
    "Answer the old names from now on (once per process)."
    if not any(isinstance(f, MovedModules) for f in sys.meta_path): sys.meta_path.append(MovedModules())


class MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import fashion_fastai.compat` gives the module `fashion_fastai.core.compat` itself: one module object under both
    names, so a class unpickled by its old name is the class itself.  Asked only for names no file answers (last on
    `sys.meta_path`): `fashion_fastai.data`, now a package, finds its old contents through `data/__init__`."""
    specs: dict

    def __init__(self): self.specs = {}

    def find_spec(self, fullname, path=None, target=None):
        pkg, _, old = fullname.partition('.')
        if pkg != 'fashion_fastai' or old not in MOVED: return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(f'fashion_fastai.{MOVED[spec.name.partition(".")[2]]}')
        self.specs[module.__name__] = module.__spec__  # the import system sets the alias's spec on it: put it back
        return module

    def exec_module(self, module): module.__spec__ = self.specs.pop(module.__name__)
