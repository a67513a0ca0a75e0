"""The inference package: what loading a model imports, the package's import graph, the one place the device is chosen
(tested with a CUDA that torch only pretends to have), and the export that leaves training-only callbacks out."""
import ast, subprocess, sys
from pathlib import Path

import pytest
import torch

import fashion_fastai
import fashion_fastai.inference as inference
import fashion_fastai.inference.load as loading
import fashion_fastai.inference.predictors as predictors
from fashion_fastai.core.errors import OptionError
from fashion_fastai.inference.load import load_model
from fashion_fastai.inference.predictors import PickledLearner, WeightsOnlyModel, resolve_device, worker_device

from helpers import export_untrained, save_image

PACKAGE = Path(fashion_fastai.__file__).parent
TRAINING = ('fashion_fastai.training', 'fashion_fastai.train', 'fashion_fastai.networks.optimizer')  # what trains
CUDA = torch.device('cuda')


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory, tiny_dls):
    "A run folder with stage one's three files, from an untrained resnet18."
    folder = tmp_path_factory.mktemp('run')
    export_untrained(folder, tiny_dls)
    return folder


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp('images')
    return [save_image(folder / f'{i}.jpg', seed=i) for i in range(3)]


def test_loading_a_model_imports_no_training_code(run_dir):
    "In a fresh interpreter, as `predict` starts: the weights-only form loads without the training loop's modules."
    code = ("import sys; from fashion_fastai.inference import load_model; "
            f"load_model({str(run_dir / 'stage1.json')!r}); import fashion_fastai.predict, fashion_fastai.app; "
            f"print(sorted(m for m in sys.modules if m.startswith('fashion_fastai.')))")
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    loaded = eval(p.stdout.strip().splitlines()[-1])
    training = [m for m in loaded if m.startswith(TRAINING)]
    assert 'fashion_fastai.inference.load' in loaded and not training, training


def runtime_nodes(tree):
    "Every node of `tree` but those under `if TYPE_CHECKING:`, which only type checkers import."
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.unparse(node.test): continue
        yield node
        yield from runtime_nodes(node)


def module_name(f: Path) -> str:
    "`fashion_fastai/inference/load.py` -> `fashion_fastai.inference.load` (a package by its `__init__.py`)."
    parts = f.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def package_imports() -> dict:
    """{module: the package's modules it imports when run, at the top or inside a function} from the source, by dotted
    name (`from fashion_fastai.networks import attributes` counts as the module
    `fashion_fastai.networks.attributes`)."""
    modules = {module_name(f): f for f in PACKAGE.rglob('*.py')}
    graph = {}
    for name, f in modules.items():
        deps = set()
        for node in runtime_nodes(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('fashion_fastai'):
                subs = {f'{node.module}.{a.name}' for a in node.names} & modules.keys()
                deps |= subs or {node.module}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith('fashion_fastai.')}
        graph[name] = deps - {name, 'fashion_fastai'}
    return graph


def test_the_package_imports_itself_by_absolute_names():
    "No relative import is left to read two ways, and every name in the graph is a module of the package."
    for f in PACKAGE.rglob('*.py'):
        assert not [n for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.ImportFrom) and n.level], f
    graph = package_imports()
    assert set().union(*graph.values()) <= graph.keys()


def test_no_import_circle_in_the_package():
    graph = package_imports()
    # export needs no training loop; inference imports no training code
    assert 'fashion_fastai.training.stages' not in graph['fashion_fastai.training.artifacts']
    assert not [d for m, deps in graph.items() if m.startswith('fashion_fastai.inference')
                for d in deps if d.startswith(TRAINING)]
    def circle(node, path):
        for dep in sorted(graph.get(node, ())):
            if dep in path: return path[path.index(dep):] + [dep]
            found = circle(dep, path + [dep])
            if found: return found
    assert not [c for m in graph for c in [circle(m, [m])] if c]


def test_the_device_is_cuda_when_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert resolve_device() == resolve_device('auto') == resolve_device('cuda') == CUDA
    assert resolve_device('cpu') == torch.device('cpu')
    # a pool shares the CPU's cores
    assert worker_device('auto') == torch.device('cpu') and worker_device('cuda') == CUDA
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert resolve_device('auto') == worker_device('auto') == torch.device('cpu')
    with pytest.raises(OptionError, match='--device cuda, but torch sees no CUDA GPU.*--device cpu'):
        resolve_device('cuda')
    with pytest.raises(OptionError, match="--device must be one of auto, cpu, cuda, got 'gpu'"): resolve_device('gpu')


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch sees a CUDA GPU, and every move of a tensor to it is recorded instead of made: the model and batches stay
    on the CPU, so the test runs anywhere. Yields the moved tensors' shapes, in order."""
    moves, real_to = [], torch.Tensor.to
    def to(self, *args, **kwargs):
        targets = [a for a in (*args, kwargs.get('device')) if isinstance(a, (str, torch.device))]
        if not any(torch.device(a).type == 'cuda' for a in targets): return real_to(self, *args, **kwargs)
        moves.append(tuple(self.shape))
        return self
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.Tensor, 'to', to)
    return moves


def test_weights_only_model_and_batches_go_to_cuda(run_dir, images, fake_cuda):
    w = WeightsOnlyModel(run_dir / 'stage1.json')  # device auto
    assert w.device == CUDA
    params = [tuple(p.shape) for p in w.model.parameters()]
    assert len(fake_cuda) >= len(params) and set(params) <= set(fake_cuda)  # every parameter moved (and the buffers)
    del fake_cuda[:]
    probs = w.probs(images, bs=2, num_workers=0)
    assert fake_cuda == [(2, 3, 32, 24), (1, 3, 32, 24)]  # each batch, and nothing else
    assert probs.device.type == 'cpu'
    del fake_cuda[:]
    cpu = WeightsOnlyModel(run_dir / 'stage1.json', device='cpu')
    assert cpu.device == torch.device('cpu') and not fake_cuda  # --device cpu: nothing moves
    assert torch.allclose(probs, cpu.probs(images, bs=2, num_workers=0)) and not fake_cuda


def test_pickled_learner_loads_on_cuda(run_dir, images, fake_cuda, monkeypatch):
    asked = []
    real = predictors.load_learner
    monkeypatch.setattr(predictors, 'load_learner', lambda f, cpu=True: asked.append(cpu) or real(f, cpu=True))
    p = PickledLearner(run_dir / 'stage1.pkl')
    assert asked == [False] and p.device == CUDA and p.learn.dls.device == CUDA and fake_cuda  # fastai's cpu=False
    assert PickledLearner(run_dir / 'stage1.pkl', device='cpu').learn.dls.device == torch.device('cpu')
    assert asked == [False, True]


def test_worker_processes_use_the_cpu_unless_cuda_is_asked(run_dir, monkeypatch):
    """With a GPU, `auto` leaves the pool's workers on the CPU (they exist to share its cores); `cuda` gives them the
    GPU."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    started = []
    class Pool(inference.Predictor):  # records what the workers would get, and starts nothing
        def __init__(self, path, form, vocabs, processes, device, load):
            started.append((path, form, processes, device))
    monkeypatch.setattr(loading, 'ProcessPredictor', Pool)
    checked = []
    real = predictors.WeightsOnlyModel
    monkeypatch.setattr(loading, 'WeightsOnlyModel', lambda path, device: checked.append(device) or real(path, 'cpu'))
    load_model(run_dir, 'stage1', processes=2)
    load_model(run_dir, 'stage1', processes=3, device='cuda')
    assert started == [(run_dir / 'stage1.json', 'weights', 2, torch.device('cpu')),
                       (run_dir / 'stage1.json', 'weights', 3, CUDA)]
    assert checked == ['cpu', 'cpu']  # the parent only checks the file, on the CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA GPU here (the fakes above test the choice)')
def test_a_real_gpu_predicts_as_the_cpu(run_dir, images, monkeypatch):
    # TF32 (cuDNN's default for convolutions on an A100/H100; torch's matmuls default to float32) keeps 10 bits of each
    # factor: errors near 1e-3 of a logit, which no float32 tolerance bounds and which differ by GPU.  In IEEE float32
    # the two devices differ only in summation order, ~1e-6 of a logit here: 1e-4 of a probability is far above that
    # and far below what a wrong weight or normalisation moves
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    gpu, cpu = load_model(run_dir, 'stage1'), load_model(run_dir, 'stage1', device='cpu')
    assert next(gpu.model.parameters()).is_cuda
    assert torch.allclose(gpu.probs(images), cpu.probs(images), atol=1e-4)


def test_export_leaves_out_the_callbacks_marked_training_only(tiny_dls, tmp_path, monkeypatch):
    "bf16 autocast and the epoch log stay with the learner that trains, not in the .pkl; any marked callback goes too."
    from fastai.vision.all import Callback, load_learner
    from fashion_fastai.training.artifacts import export_stage
    from fashion_fastai.training.stages import build_learner
    class Scratch(Callback): training_only = True  # unpicklable from here: exporting it would fail the test
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    learn = build_learner(tiny_dls, 'resnet18', path=tmp_path, precision='bf16')
    learn.add_cb(Scratch())
    marked = {type(cb).__name__ for cb in learn.cbs if getattr(cb, 'training_only', False)}
    assert {'EpochLog', 'CPUAutocast', 'Scratch'} <= marked
    export_stage(learn, tmp_path, 'stage1', 'resnet18', (32, 24))
    assert {type(cb).__name__ for cb in learn.cbs if getattr(cb, 'training_only', False)} == marked  # given back
    exported = {type(cb).__name__ for cb in load_learner(tmp_path / 'stage1.pkl').cbs}
    assert not exported & marked and 'Recorder' in exported


def test_the_pytorch_path_feeds_the_bytes_fastais_pipeline_does(run_dir, images, tmp_path):
    "No fastai DataLoader at inference, yet the same tensors as the exported learner's `test_dl` gives its model."
    from fastai.vision.all import load_learner
    import numpy as np
    from PIL import Image
    wide = tmp_path / 'wide.png'  # another aspect ratio than the model's (padded), with transparency (onto white)
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (50, 100, 4), dtype=np.uint8), 'RGBA').save(wide)
    files = [*images, wide]
    w = WeightsOnlyModel(run_dir / 'stage1.json', device='cpu')
    ours = torch.cat(list(w.batches(files, bs=3)))
    learn = load_learner(run_dir / 'stage1.pkl', cpu=True)
    theirs = torch.cat([b[0].as_subclass(torch.Tensor) for b in learn.dls.test_dl(files, bs=3, num_workers=0)])
    assert torch.equal(ours, theirs)  # bit for bit: same decode, resize and float arithmetic
    assert torch.equal(torch.cat(list(w.batches(files, bs=2, num_workers=0))), ours)  # decoded ahead or not: the same
