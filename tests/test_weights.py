"""Where the starting weights come from: the torchvision cache under $TORCH_HOME, a --weights file, or scratch; and that
the file's tensors really end up in the learner's body.  No network: downloads are patched to fail."""
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import pytest
import torch
import torchvision

from fashion_fastai.training.stages import build_model
from helpers import distinctive_resnet_state
from fashion_fastai.networks.weights import (ARCHS, WeightsError, body_state_from_imagenet, check_weights_file,
                                             get_arch, imagenet_checkpoint, resolve_weights)
from fashion_fastai.core.models import MODELS

STAGE1, STAGE2, ALL_CLASSES = MODELS  # the run's models, in training order


def _no_network(*a, **k):
    raise URLError("no network in tests")


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, and a download that fails as it does offline: torch's own `load_state_dict_from_url` still
    runs (so a cached file is found the real way), only its download step is patched."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    return home


def assert_body_is(learn, saved, arch="resnet18"):
    "The learner's body holds exactly the saved torchvision tensors (mapped to fastai's body keys)."
    body = learn.model[0]
    assert torch.equal(body[0].weight, saved["conv1.weight"])                    # fastai body[0] = conv1
    assert torch.equal(body[1].running_var, saved["bn1.running_var"])            # body[1] = bn1
    assert torch.equal(body[7][1].conv2.weight, saved["layer4.1.conv2.weight"])  # body[7] = layer4
    mapped, got = body_state_from_imagenet(arch, saved), body.state_dict()
    assert got.keys() == mapped.keys() and len(got) > 100
    assert all(torch.equal(got[k], mapped[k]) for k in got)


def test_pretrained_no_is_scratch_without_touching_the_network(monkeypatch, recwarn):
    calls = []
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: calls.append(a) or {})
    state, info = resolve_weights("resnet18", "no")
    assert state is None and info.pretrained is False and info.source == "scratch" and info.note == "--pretrained no"
    assert calls == [] and not [w for w in recwarn if "SCRATCH" in str(w.message)]


def test_checkpoint_path_follows_torch_home_at_call_time(tmp_path, monkeypatch):
    url, _ = imagenet_checkpoint("resnet18")
    assert url.startswith("https://") and "resnet18" in url
    for home in (tmp_path / "a", tmp_path / "b"):
        monkeypatch.setenv("TORCH_HOME", str(home))
        assert torch.hub.get_dir() == str(home / "hub")
        assert imagenet_checkpoint("resnet18") == (url, home / "hub" / "checkpoints" / Path(urlparse(url).path).name)


def test_cached_weights_are_loaded_into_the_body(torch_home, tmp_path, tiny_dls):
    saved = distinctive_resnet_state()
    _, cache = imagenet_checkpoint("resnet18")
    assert cache.is_relative_to(torch_home)
    cache.parent.mkdir(parents=True)
    torch.save(saved, cache)
    state, info = resolve_weights("resnet18", "yes")
    assert info.pretrained is True and info.source == str(cache) and info.note == "torchvision cache"
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    assert resolve_weights("resnet18", "auto")[1].source == str(cache)
    learn = build_model(STAGE1, tiny_dls, "resnet18", "imagenet", imagenet_state=state, path=tmp_path)
    assert_body_is(learn, saved)
    assert learn.model[1][-1].out_features == 3  # head: fresh, sized to the part's vocab


def test_weights_file_is_loaded_into_the_body(torch_home, tmp_path, tiny_dls, monkeypatch):
    saved = distinctive_resnet_state(seed=7)
    torch.save(saved, tmp_path / "my resnet18.pth")
    monkeypatch.chdir(tmp_path)
    state, info = resolve_weights("resnet18", "auto", weights_file="my resnet18.pth")  # relative, as typed
    assert info.pretrained is True and "--weights" in info.note
    assert info.source == str((tmp_path / "my resnet18.pth").resolve())  # recorded absolute
    assert_body_is(build_model(STAGE1, tiny_dls, "resnet18", "imagenet", imagenet_state=state, path=tmp_path), saved)
    assert not imagenet_checkpoint("resnet18")[1].exists()  # the cache was not consulted (nor filled)


def test_missing_weights_file(torch_home, tmp_path):
    with pytest.raises(WeightsError, match="does not exist") as e:
        resolve_weights("resnet18", "yes", weights_file=tmp_path / "nope.pth")
    assert str(tmp_path / "nope.pth") in str(e.value)


def test_offline_auto_warns_and_trains_from_scratch(torch_home):
    with pytest.warns(UserWarning, match="TRAINING FROM SCRATCH") as rec:
        state, info = resolve_weights("resnet18", "auto")
    assert state is None and info.pretrained is False and info.source == "scratch"
    assert "URLError" in info.note
    msg = str(rec[0].message)
    assert str(imagenet_checkpoint("resnet18")[1]) in msg and "--weights" in msg and "TORCH_HOME" in msg


def test_offline_yes_raises_with_instructions(torch_home):
    with pytest.raises(WeightsError) as e:
        resolve_weights("resnet18", "yes")
    msg = str(e.value)
    assert "--weights" in msg and "TORCH_HOME" in msg and str(imagenet_checkpoint("resnet18")[1]) in msg
    assert isinstance(e.value.__cause__, URLError)


def test_offline_when_the_whole_loader_fails(tmp_path, monkeypatch):
    "Same fallback whatever layer fails (here torch's loader itself)."
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_network)
    with pytest.warns(UserWarning, match="TRAINING FROM SCRATCH"):
        assert resolve_weights("resnet34", "auto")[0] is None
    with pytest.raises(WeightsError, match="--weights"):
        resolve_weights("resnet34", "yes")


def test_wrong_arch_state_dict(torch_home, tmp_path, tiny_dls):
    f = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), f)
    state, _ = resolve_weights("resnet18", "yes", weights_file=f)
    with pytest.raises(WeightsError, match="resnet18"):
        body_state_from_imagenet("resnet18", state)
    with pytest.raises(WeightsError, match="same --arch"):
        build_model(STAGE1, tiny_dls, "resnet18", "imagenet", imagenet_state=state, path=tmp_path)


@pytest.mark.parametrize("kind", ["text", "cut short", "not a state_dict", "another network"])
def test_a_weights_file_that_is_not_what_its_name_says_is_named_before_anything_is_read(tmp_path, kind):
    "`check_weights_file` runs before the data is read: each kind of bad --weights file is one error naming the file."
    f = tmp_path / "resnet18 weights.pth"
    good = tmp_path / "good.pth"; torch.save(torchvision.models.resnet18(weights=None).state_dict(), good)
    if kind == "text": f.write_text("<html>404 Not Found</html>")
    elif kind == "cut short": f.write_bytes(good.read_bytes()[:100_000])
    elif kind == "not a state_dict": torch.save([1, 2, 3], f)
    else: torch.save(torchvision.models.resnet34(weights=None).state_dict(), f)
    state = torch.get_rng_state()
    with pytest.raises(WeightsError) as e: check_weights_file("resnet18", f)
    assert str(f) in str(e.value) or "resnet18" in str(e.value)
    assert (str(f) in str(e.value)) == (kind != "another network")  # unreadable: the file; misfit: the first key
    check_weights_file("resnet18", good)  # a good one passes ...
    assert torch.equal(torch.get_rng_state(), state)  # ... and checking draws no random number the run would use


def test_unknown_arch_and_option():
    with pytest.raises(ValueError) as e:
        get_arch("vgg99")
    assert "vgg99" in str(e.value) and all(a in str(e.value) for a in ARCHS)
    assert get_arch("resnet34") is torchvision.models.resnet34
    assert get_arch("vgg16") == "vgg16"  # a timm name: vision_learner takes it as it is
