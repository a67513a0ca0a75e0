"""Test-time augmentation of the final evaluation: `--tta flip` (each image averaged with its mirror image, for every
head, reusing a plain pass the run has) and `--tta N` (fastai's `tta`).  resnet18 at 32x24 on the tiny data set."""
import pytest
import torch

from fashion_fastai.training.config import TrainConfig, parse_tta, FLIP
from fashion_fastai.core.errors import OptionError
from fashion_fastai.training.stages import build_learner
from fashion_fastai.evaluation.tta import predict_with_tta, mean_outputs


@pytest.mark.parametrize("given, parsed", [("flip", FLIP), ("Flip", FLIP), (" flip", FLIP), (0, 0), ("0", 0),
                                           (4, 4), ("4", 4)])
def test_tta_takes_flip_or_a_number_of_passes(given, parsed):
    assert parse_tta(given) == parsed
    assert TrainConfig(pretrained="no", tta=given).tta == parsed


@pytest.mark.parametrize("given", ["mirror", "-1", -1, "1.5", None])
def test_other_tta_values_are_refused_saying_what_is_valid(given):
    with pytest.raises(OptionError, match=r"--tta must be 'flip'.*4 is usual.*0 for none; got"): parse_tta(given)


def test_flip_works_with_attributes_and_fastai_tta_does_not():
    assert TrainConfig(pretrained="no", attributes="gender", tta="flip").tta == FLIP
    with pytest.raises(OptionError, match="--tta 2 .*--tta flip"):
        TrainConfig(pretrained="no", attributes="gender", tta=2)


@pytest.fixture(scope="module")
def learner(tiny_dls, tmp_path_factory):
    torch.manual_seed(0)
    return build_learner(tiny_dls, "resnet18", path=tmp_path_factory.mktemp("tta"))


def softmax_of(learn, dl, mirror: bool):
    "The model's probabilities on `dl`'s images (mirrored left to right when asked), computed by hand."
    learn.model.eval()
    with torch.no_grad():
        return torch.cat([learn.model(x.flip(-1) if mirror else x).softmax(-1) for x, _ in dl])


def test_flip_averages_each_image_with_its_mirror_image(learner, tiny_dls):
    dl = tiny_dls.test_dl(tiny_dls.valid_ds.items, with_labels=True, shuffle=False)
    plain, mirrored = softmax_of(learner, dl, False), softmax_of(learner, dl, True)
    assert not torch.allclose(plain, mirrored, atol=1e-4)  # the images are not symmetric: flip changes the answer
    probs, targs = predict_with_tta(learner, dl, FLIP)
    assert torch.allclose(probs, (plain + mirrored) / 2, atol=1e-5)
    assert torch.equal(targs, torch.cat([y for _, y in dl]))
    none, _ = predict_with_tta(learner, dl, 0)
    assert torch.allclose(none, plain, atol=1e-5)


def test_flip_reuses_a_plain_pass_it_is_given(learner, tiny_dls):
    "The run's kept validation pass is flip's unmirrored half: given outputs are used as they are, not predicted again."
    dl = tiny_dls.test_dl(tiny_dls.valid_ds.items, with_labels=True, shuffle=False)
    given = torch.zeros(len(dl.dataset), tiny_dls.c), torch.arange(len(dl.dataset))
    probs, targs = predict_with_tta(learner, dl, FLIP, plain=given)
    assert torch.allclose(probs, softmax_of(learner, dl, True) / 2, atol=1e-5) and targs is given[1]
    assert predict_with_tta(learner, dl, 0, plain=given)[0] is given[0]


def test_fastai_tta_keeps_its_own_passes(learner, tiny_dls):
    dl = tiny_dls.test_dl(tiny_dls.valid_ds.items, with_labels=True, shuffle=False)
    given = torch.zeros(len(dl.dataset), tiny_dls.c), torch.arange(len(dl.dataset))
    probs, _ = predict_with_tta(learner, dl, 2, plain=given)
    assert torch.allclose(probs.sum(1), torch.ones(len(dl.dataset)))  # predicted, not the given zeros


def test_outputs_of_several_heads_are_averaged_head_by_head():
    a, b = (torch.ones(2, 3), torch.zeros(2, 5)), (torch.zeros(2, 3), torch.ones(2, 5))
    m = mean_outputs(a, b)
    assert isinstance(m, tuple) and [t.shape for t in m] == [(2, 3), (2, 5)]
    assert all(torch.equal(t, torch.full_like(t, 0.5)) for t in m)


def test_the_run_evaluation_averages_its_kept_pass_with_the_mirrored_one(learner, tiny_data, tiny_dls):
    "`evaluate_heads` with a kept validation pass and `--tta flip`: one new pass, the mirrored one, averaged in."
    from fashion_fastai.core.schema import LABEL
    from fashion_fastai.data.styles import eval_rows, as_items
    from fashion_fastai.evaluation.evaluate import evaluate_heads
    rows = eval_rows(tiny_data, "top")
    dl = tiny_dls.test_dl(as_items(rows), with_labels=True, shuffle=False)
    plain, mirrored = softmax_of(learner, dl, False), softmax_of(learner, dl, True)
    targs = torch.cat([y for _, y in dl])
    counts = {LABEL: tiny_data.train_counts("top")}
    _, summary, probs, got = evaluate_heads(learner, rows, counts, FLIP, predicted=(plain, targs))[LABEL]
    assert torch.allclose(probs, (plain + mirrored) / 2, atol=1e-5) and torch.equal(got, targs)
    _, _, kept, _ = evaluate_heads(learner, rows, counts, 0, predicted=(plain, targs))[LABEL]
    assert torch.equal(kept, plain)  # no tta: the kept pass is the evaluation
