"""The package's layout: the schema every layer reads imports nothing heavy, and the module names from before the
subpackages (which exported learners' pickles and users' code name) still import, as the modules themselves."""
import importlib, pickle, subprocess, sys
from pathlib import Path

import pytest

import fashion_fastai
from fashion_fastai.core.moved import MOVED


def test_the_schema_imports_no_fastai_torch_or_pandas():
    code = ("import sys; import fashion_fastai.core.schema, fashion_fastai.data, fashion_fastai.answering; "
            "print(sorted(m for m in ('fastai', 'torch', 'pandas', 'timm') if m in sys.modules))")
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == '[]'


@pytest.mark.parametrize('old', sorted(MOVED))
def test_an_old_module_name_is_the_moved_module(old):
    module = importlib.import_module(f'fashion_fastai.{MOVED[old]}')
    assert importlib.import_module(f'fashion_fastai.{old}') is module
    assert module.__spec__.name == module.__name__ == f'fashion_fastai.{MOVED[old]}'  # its own, not the alias's


def test_a_pickle_naming_the_old_modules_loads_the_classes_themselves():
    "What a `.pkl` exported before the subpackages holds: classes named by their old modules."
    from fashion_fastai.core.compat import PadResize
    from fashion_fastai.data.styles import SplitColumn
    from fashion_fastai.networks.attributes import AttributeLoss
    for cls, old in ((PadResize, b'fashion_fastai.compat'), (SplitColumn, b'fashion_fastai.data'),
                     (AttributeLoss, b'fashion_fastai.attributes')):
        raw = pickle.dumps(cls, protocol=0)  # the text protocol: module and name on lines of their own
        assert cls.__module__.encode() in raw
        assert pickle.loads(raw.replace(cls.__module__.encode(), old)) is cls


def test_the_data_package_answers_only_its_former_names():
    from fashion_fastai.data import SplitColumn, load_styles
    from fashion_fastai.data.styles import SplitColumn as Same, load_styles as same
    assert SplitColumn is Same and load_styles is same
    with pytest.raises(ImportError): from fashion_fastai.data import no_such_name  # noqa: F401


def test_the_commands_are_the_top_level_modules():
    "Each `python -m fashion_fastai.X` is a module at the top; the rest of the package sits in subpackages by job."
    top = {p.stem for p in Path(fashion_fastai.__file__).parent.glob('*.py')}
    assert top == {'__init__', 'cli', 'train', 'predict', 'app', 'export', 'tag', 'index', 'audit', 'prepare'}
