"""Other product attributes beside the article type: options, loading, the DataBlock, heads, loss, metrics, stages."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from helpers import HEADER, SMALL, write_dataset
from fashion_fastai.networks.attributes import (AttributeHeads, AttributeLoss, HeadAccuracy, article_vocab,
                                                attribute_heads, head_vocabs)
from fashion_fastai.training.config import TrainConfig
from fashion_fastai.core.schema import MISSING_CODE
from fashion_fastai.data.styles import load_data, part_dataloaders
from fashion_fastai.core.errors import DataError, OptionError
from fashion_fastai.training.stages import body_of, build_learner, build_model, CPUAutocast
from fashion_fastai.core.models import MODELS

STAGE1, STAGE2, ALL_CLASSES = MODELS  # the run's models, in training order

MASTER = {"Belts": "Accessories", "Caps": "Accessories", "Socks": "Apparel", "Ties": "Accessories"}


def line(ident, article, year, gender, usage):
    return ",".join([str(ident), gender, MASTER[article], "Topwear", article, "Black", "Summer", str(year), usage,
                     f"Brand {gender} {article}"])


def attribute_lines():
    """The tiny set's classes (3 top, 1 rare), genders alternating, `usage` empty on every fourth row and 'Ethnic' only
    on an odd-year row (a value only the test split has)."""
    lines, ident = [], 100
    for c, years in [("Belts", [2012, 2014] * 3 + [2011, 2013]), ("Caps", [2012, 2014] * 3 + [2011, 2013]),
                     ("Socks", [2012, 2014] * 3 + [2011, 2013]), ("Ties", [2012, 2016, 2013])]:
        for y in years:
            usage = "" if ident % 4 == 0 else "Ethnic" if ident == 107 else "Casual" if ident % 3 else "Sports"
            lines.append(line(ident, c, y, "Men" if ident % 2 else "Women", usage)); ident += 1
    return lines


@pytest.fixture(scope="module")
def attr_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("attrs"), attribute_lines())


@pytest.fixture(scope="module")
def attr_data(attr_dir):
    return load_data(attr_dir, k=3, attributes=("usage", "masterCategory"))


@pytest.fixture(scope="module")
def attr_dls(attr_data):
    return {p: part_dataloaders(attr_data, p, size=SMALL, bs=8, num_workers=0, augment=False, seed=0)
            for p in ("top", "rare")}


# ----------------------------------------------------------------------------- options

def test_attribute_options_default_to_the_published_weights():
    assert TrainConfig().attributes == () and TrainConfig().attribute_weights == ()
    cfg = TrainConfig(attributes="masterCategory, subCategory")
    assert cfg.attributes == ("masterCategory", "subCategory") and cfg.attribute_weights == (2., .5, .5)
    cfg = TrainConfig(attributes="gender,usage,season", attribute_weights="1,0,0.25,3")
    assert cfg.attribute_weights == (1., 0., .25, 3.)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # config.json round trip (lists back to tuples)


@pytest.mark.parametrize("changes, says", [
    (dict(attributes="colour"), ["'colour'", "baseColour", "masterCategory", "usage"]),
    (dict(attributes="articleType"), ["'articleType'", "every run predicts", "gender"]),
    (dict(attributes="gender,gender"), ["twice"]),
    (dict(attributes="gender,usage", attribute_weights="2,0.5"), ["3 numbers", "gender, usage", "'2,0.5'"]),
    (dict(attributes="gender", attribute_weights="2,x"), ["2 numbers"]),
    (dict(attributes="gender", attribute_weights="0,1"), ["(> 0) for articleType"]),
    (dict(attributes="gender", attribute_weights="2,-1"), [">= 0"]),
    (dict(attribute_weights="2,0.5"), ["needs --attributes"]),
    (dict(attributes="gender", tta=2), ["--tta", "--attributes"]),
])
def test_bad_attribute_options_say_what_is_valid(changes, says):
    with pytest.raises(OptionError) as e: TrainConfig(**changes)
    assert all(s in str(e.value) for s in says), str(e.value)


# ----------------------------------------------------------------------------- data

def test_rows_without_an_attribute_keep_their_image_and_are_counted(attr_dir, attr_data):
    plain = load_data(attr_dir, k=3)
    assert len(attr_data.frame) == len(plain.frame) == len(attribute_lines())  # nothing dropped
    empty = sum(1 for l in attribute_lines() if l.split(",")[8] == "")
    assert empty >= 4 and attr_data.report.missing_attribute == {"usage": empty, "masterCategory": 0}
    assert f"{empty} without usage" in attr_data.report.summary()
    # sorted union over both splits and both parts: 'Ethnic' is on one odd-year row only
    assert attr_data.attributes == {"usage": ["Casual", "Ethnic", "Sports"],
                                    "masterCategory": ["Accessories", "Apparel"]}
    assert list(attr_data.attributes) == ["usage", "masterCategory"]  # the order of --attributes


def test_an_attribute_that_cannot_be_learnt_is_an_error(attr_dir, tmp_path):
    with pytest.raises(DataError, match="season.*same value 'Summer'"): load_data(attr_dir, k=3, attributes=("season",))
    no_usage = [",".join(l.split(",")[:8] + l.split(",")[9:]) for l in attribute_lines()]
    folder = write_dataset(tmp_path / "nousage", no_usage, header=HEADER.replace(",usage", ""))
    with pytest.raises(DataError) as e: load_data(folder, k=3, attributes=("usage",))
    assert "no column(s) ['usage']" in str(e.value) and "masterCategory" in str(e.value)


def test_datablock_has_a_target_per_attribute_article_type_last(attr_data, attr_dls):
    dls = attr_dls["top"]
    assert article_vocab(dls) == attr_data.vocabs["top"] and dls.n_inp == 1
    assert [list(v) for v in dls.vocab[:2]] == [attr_data.attributes["usage"], attr_data.attributes["masterCategory"]]
    rows = attr_data.part("top")
    dl = dls.test_dl(rows.to_dict("records"), with_labels=True, shuffle=False, bs=len(rows))
    _, usage, master, article = dl.one_batch()
    missing = torch.tensor([r == "" for r in rows["usage"]])
    assert missing.any() and torch.equal(usage == MISSING_CODE, missing)
    vocab = attr_data.attributes["usage"]
    assert [vocab[i] for i in usage[~missing]] == list(rows.loc[~missing.numpy(), "usage"])
    assert [attr_data.vocabs["top"][i] for i in article] == list(rows["articleType"])
    decoded = dls.decode_batch((_, usage, master, article), max_n=len(rows))
    assert [d[1] for d in decoded] == list(rows["usage"])  # a missing value decodes back to empty


# ----------------------------------------------------------------------------- loss, metrics, heads

def test_loss_weighs_each_head_over_the_rows_that_have_its_attribute():
    g = torch.Generator().manual_seed(0)
    preds = (torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g), torch.randn(6, 5, generator=g))
    targs = (torch.tensor([0, MISSING_CODE, 2, 1, MISSING_CODE, 0]), torch.full((6,), MISSING_CODE),
             torch.tensor([4, 0, 1, 2, 3, 4]))
    loss = AttributeLoss((0.5, 0.5, 2.))(preds, *targs)
    keep = targs[0] != MISSING_CODE
    expected = 0.5 * F.cross_entropy(preds[0][keep], targs[0][keep]) + 2 * F.cross_entropy(preds[2], targs[2])
    assert torch.isclose(loss, expected)  # the head no row has adds 0, not NaN
    smooth = AttributeLoss((1., 0., 0.), label_smoothing=0.1)(preds, *targs)
    assert torch.isclose(smooth, F.cross_entropy(preds[0][keep], targs[0][keep], label_smoothing=0.1))
    probs = AttributeLoss((1., 1., 1.)).activation(preds)
    assert all(torch.allclose(p.sum(-1), torch.ones(6)) for p in probs)
    assert all(torch.equal(d, p.argmax(-1)) for d, p in zip(AttributeLoss((1., 1., 1.)).decodes(preds), preds))


def test_head_accuracy_counts_only_rows_with_the_attribute():
    m = HeadAccuracy(0, "usage_accuracy")
    m.reset()
    pred = (torch.tensor([[2., 1.], [0., 3.], [5., 0.], [1., 0.]]),)
    for targ in (torch.tensor([0, 0, MISSING_CODE, 0]), torch.tensor([MISSING_CODE] * 4)):
        m.accumulate(SimpleNamespace(pred=pred, yb=(targ,)))
    assert (m.correct, m.count, m.value, m.name) == (2, 3, 2 / 3, "usage_accuracy")
    m.reset()
    assert math.isnan(m.value)
    top2 = HeadAccuracy(0, "top5", k=5)  # k beyond the classes: any of them
    top2.reset(); top2.accumulate(SimpleNamespace(pred=pred, yb=(torch.tensor([1, 0, 1, 1]),)))
    assert top2.value == 1


def test_learner_has_the_article_head_of_fastai_and_one_head_per_attribute(attr_data, attr_dls, tmp_path):
    learn = build_learner(attr_dls["top"], "resnet18", path=tmp_path, attributes=attr_data.attributes,
                          attribute_weights=(2., .5, .5))
    heads = attribute_heads(learn.model)
    assert isinstance(heads, AttributeHeads)
    vocabs = head_vocabs(learn.model, article_vocab(learn.dls))  # in output order, the article type last
    assert list(vocabs) == ["usage", "masterCategory", "articleType"]
    assert vocabs == {**attr_data.attributes, "articleType": attr_data.vocabs["top"]}
    plain = build_learner(attr_dls["top"], "resnet18", path=tmp_path)
    assert [type(m) for m in heads.article] == [type(m) for m in plain.model[1]]  # the article type: fastai's own head
    assert isinstance(learn.loss_func, AttributeLoss) and learn.loss_func.weights == (.5, .5, 2.)  # output order
    x = torch.randn(4, 3, *SMALL)
    learn.model.eval()
    with torch.no_grad():
        out = learn.model(x)
        assert [o.shape for o in out] == [(4, 3), (4, 2), (4, 3)]
        assert torch.equal(out[-1], heads.article(learn.model[0](x)))  # the other heads leave it alone
    learn.fit(1, 1e-3)
    assert learn.recorder.metric_names[-4:-1] == ["top5", "usage_accuracy", "masterCategory_accuracy"]
    assert all(math.isfinite(float(v)) for v in learn.recorder.values[-1])


def test_bf16_on_cpu_with_several_heads(attr_data, attr_dls, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    learn = build_learner(attr_dls["top"], "resnet18", path=tmp_path, precision="bf16",
                          attributes=attr_data.attributes, attribute_weights=(2., .5, .5))
    assert any(isinstance(cb, CPUAutocast) for cb in learn.cbs)
    learn.fit(1, 1e-3)
    assert all(math.isfinite(float(l)) for l in learn.recorder.losses)
    probs, targs = learn.get_preds()
    assert all(p.dtype == torch.float32 for p in probs) and len(targs) == 3


def test_stage_two_and_all_classes_keep_the_other_heads(attr_data, attr_dls, tmp_path):
    from fashion_fastai.data.styles import ALL
    kw = dict(path=tmp_path, attributes=attr_data.attributes, attribute_weights=(2., .5, .5))
    learn1 = build_model(STAGE1, attr_dls["top"], "resnet18", "imagenet", **kw)
    with torch.no_grad():  # trained-looking heads, unlike fresh ones
        for v in attribute_heads(learn1.model).others.state_dict().values():
            if v.is_floating_point(): v.add_(1.)
    learn2 = build_model(STAGE2, attr_dls["rare"], "resnet18", "stage1", source=learn1, **kw)
    same = lambda a, b: a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    others = lambda l: attribute_heads(l.model).others.state_dict()
    assert same(others(learn2), others(learn1)) and same(body_of(learn2), body_of(learn1))
    assert attribute_heads(learn2.model).article[-1].out_features == len(attr_data.vocabs["rare"])  # a new article head
    dls_all = part_dataloaders(attr_data, ALL, size=SMALL, bs=8, num_workers=0, augment=False, seed=0)
    learn_all = build_model(ALL_CLASSES, dls_all, "resnet18", "stage2", "imprint", source=learn2, **kw)
    assert same(others(learn_all), others(learn2))
    assert attribute_heads(learn_all.model).article[-1].out_features == len(attr_data.vocabs[ALL])
    scratch = build_model(STAGE2, attr_dls["rare"], "resnet18", "scratch", **kw)
    assert not same(others(scratch), others(learn1))  # without stage one's body, its heads do not carry over either


def test_learn_predict_and_both_exported_forms_answer_every_attribute(attr_data, attr_dls, tmp_path):
    import json
    from fastai.vision.all import load_learner
    from fashion_fastai.training.artifacts import export_stage
    from fashion_fastai.inference.predictors import PickledLearner, WeightsOnlyModel
    learn = build_learner(attr_dls["top"], "resnet18", path=tmp_path, attributes=attr_data.attributes,
                          attribute_weights=(2., .5, .5))
    learn.fit(1, 1e-3)  # trained BatchNorm statistics: the two forms must agree on them too
    files = export_stage(learn, tmp_path, "stage1", "resnet18", SMALL)
    row = attr_data.part("top").iloc[0]
    for l in (learn, load_learner(files["pkl"])):
        labels, _, _ = l.predict(row["file"])
        assert len(labels) == 3 and labels[0] in attr_data.attributes["usage"]
        assert labels[1] in attr_data.attributes["masterCategory"] and labels[2] in attr_data.vocabs["top"]
    images = list(attr_data.part("top")["file"][:5])
    w, p = WeightsOnlyModel(files["json"]), PickledLearner(files["pkl"])
    assert w.vocabs == p.vocabs == {**attr_data.attributes, "articleType": attr_data.vocabs["top"]}
    hw, hp = w.head_probs(images), p.head_probs(images)
    assert all(torch.allclose(hw[h], hp[h], atol=1e-5) for h in w.vocabs)
    assert torch.equal(w.probs(images), hw["articleType"])
    meta = json.loads((tmp_path / "stage1.json").read_text())
    del meta["attributes"]["usage"]  # a JSON that does not describe these weights
    (tmp_path / "stage1.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="other attributes \\['masterCategory'\\] but stage1.pth has heads for "
                                         "\\['masterCategory', 'usage'\\]"):
        WeightsOnlyModel(tmp_path / "stage1.json")


# ----------------------------------------------------------------------------- end to end, as a user runs it

ATTRS = ("masterCategory", "subCategory", "gender")


@pytest.fixture(scope="module")
def attr_run(tmp_path_factory):
    "One tiny multi-attribute run on the demo data, shared by the tests below."
    from helpers import cli_env, run_module, tiny_train_args
    env = cli_env(tmp_path_factory.mktemp("env"))
    out = tmp_path_factory.mktemp("runs")
    p = run_module("fashion_fastai.train", *tiny_train_args(epochs_all=1, lr_all=1e-3), "--attributes", ",".join(ATTRS),
                   "--out", out, "--name", "attrs", env=env)
    return out / "attrs", env, p.stdout


@pytest.mark.slow
def test_a_multi_attribute_run_reports_every_head(attr_run):
    import json
    run_dir, _, stdout = attr_run
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["attributes"] == list(ATTRS) and cfg["attribute_weights"] == [2., .5, .5, .5]
    m = json.loads((run_dir / "metrics.json").read_text())
    md = (run_dir / "results.md").read_text()
    assert "| other attributes | a head each for masterCategory, subCategory, gender" in md
    assert "articleType 2, masterCategory 0.5" in md
    for stage in ("stage1", "stage2", "all"):
        s = m["stages"][stage]  # the article type's numbers, where a plain run has them
        assert {"all", "seen", "ceiling_top1",
                "n_test"} <= set(s) and 0 <= s["all"]["micro_top1"] <= s["all"]["micro_top5"] <= 1
        for a in ATTRS:
            h = m["attributes"][stage][a]
            assert 0 <= h["all"]["micro_top1"] <= 1 and h["n_test"] == s["n_test"]  # no demo row lacks these
            assert set(h["all"]) == {"micro_top1", "macro_top1"} and "ceiling_top1" in h
            assert f"## {stage}: {a}" in md and (run_dir / f"per_class_{stage}_{a}.csv").is_file()
            assert f"{stage} {a}: test micro top-1" in stdout
        assert md.index(f"## {stage}\n") < md.index(f"## {stage}: masterCategory")
    for a in ATTRS:
        assert f"![confusion_{a}_all](confusion_{a}_all.png)" in md
        assert (run_dir / f"confusion_{a}_all.png").stat().st_size
    assert (run_dir / "top_losses.png").stat().st_size and (run_dir / "confusion_top20.png").stat().st_size
    h = __import__("pandas").read_csv(run_dir / "history_stage1.csv")
    assert {f"{a}_accuracy" for a in ATTRS} <= set(h.columns) and {"accuracy", "top5"} <= set(h.columns)


@pytest.mark.slow
def test_predict_shows_every_attribute_of_a_bare_image(attr_run, tmp_path):
    import json
    from helpers import run_module
    from fashion_fastai.app import classify, labels, load_predictors
    run_dir, env, _ = attr_run
    cfg = json.loads((run_dir / "config.json").read_text())
    image = next((__import__("pathlib").Path(cfg["data_dir"]) / "images").glob("*.jpg"))
    bare = tmp_path / "photo.jpg"  # a photo outside the data set: no styles.csv row, no label
    bare.write_bytes(image.read_bytes())
    vocabs = json.loads((run_dir / "all.json").read_text())["attributes"]
    assert list(vocabs) == list(ATTRS)
    answers = {}
    for model in (run_dir, run_dir / "all.pkl"):
        p = run_module("fashion_fastai.predict", model, bare, "--json", "--topk", "2", "--trust-pickle", env=env)
        pred = json.loads(p.stdout)["predictions"][0]
        assert list(pred["attributes"]) == list(ATTRS) and len(pred["top"]) == 2
        assert all(a["class"] in vocabs[h] and 0 < a["prob"] <= 1 for h, a in pred["attributes"].items())
        answers[model.name] = pred["attributes"]
    assert answers["attrs"] == answers["all.pkl"]  # the weights-only form and the exported learner agree
    table = run_module("fashion_fastai.predict", run_dir, bare, "--processes", "2", env=env).stdout
    for a in ATTRS:
        got = answers["attrs"][a]
        assert f"; {a} {got['class']} {100 * got['prob']:.1f}%" in table
    predictors = load_predictors(run_dir)
    assert labels(predictors)[1:] == list(ATTRS)
    page = classify(predictors, str(bare))
    assert len(page) == 4 and page[1:] == [{a["class"]: a["prob"]} for a in answers["attrs"].values()]
