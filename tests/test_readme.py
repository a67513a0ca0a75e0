"""README stays true to the package: every command it shows runs as a module, every import and dotted name it shows
resolves, and every path of its Layout table exists."""
import importlib, importlib.util, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()


def test_every_command_shown_is_a_module():
    commands = set(re.findall(r'-m (fashion_fastai\.\w+)', README))
    assert {'fashion_fastai.train', 'fashion_fastai.predict', 'fashion_fastai.export'} <= commands
    assert [c for c in sorted(commands) if importlib.util.find_spec(c) is None] == []


def resolve(dotted: str):
    "`fashion_fastai.inference.load_model` -> the object: the longest importable module, then attributes."
    parts = dotted.split('.')
    for i in range(len(parts), 0, -1):
        try: obj = importlib.import_module('.'.join(parts[:i]))
        except ModuleNotFoundError: continue
        for name in parts[i:]: obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize('dotted', sorted(set(re.findall(r'`(fashion_fastai(?:\.\w+)+)', README))))
def test_every_dotted_name_shown_resolves(dotted):
    assert resolve(dotted) is not None


@pytest.mark.parametrize('line',
                         sorted(set(re.findall(r'^from (fashion_fastai[\w.]*) import ([\w, ]+)', README, re.M))))
def test_every_import_shown_works(line):
    module, names = line
    assert all(hasattr(importlib.import_module(module), n.strip()) for n in names.split(','))


def test_every_path_shown_exists():
    paths = set(re.findall(r'`((?:fashion_fastai|tests|bench|nbs|scripts)/[\w./-]*)`', README))
    assert len(paths) > 10
    assert [p for p in sorted(paths) if not (ROOT / p).exists()] == []
