"""`predict` against what users hand it: missing or broken model files, a `.pkl` from another fastai (or a damaged one),
files that are not what their names say, folders with nothing usable, and a non-image among good inputs.  The model is a
small untrained resnet18 exported here (no training)."""
import json, subprocess, sys

import pytest
import torch

from fashion_fastai.answering.answering import REVIEW_PROB
from fashion_fastai.core.errors import ModelError
from fashion_fastai.inference.answers import predict_paths
from fashion_fastai.inference.load import load_model
from fashion_fastai.inference.locate import find_model
from fashion_fastai.inference.pool import ProcessPredictor
from fashion_fastai.predict import main

from helpers import TINY_TOP, export_untrained, save_image

VOCAB = list(TINY_TOP)


def write_weights_only(folder, dls, stage="stage1"):
    """`<stage>.json` + `<stage>.pth` as `export_stage` writes them for an untrained 3-class resnet18, without the
    `.pkl`."""
    j = export_untrained(folder, dls, stage)
    j.with_suffix(".pkl").unlink()
    return j


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_dls):
    "A run folder holding only stage one's weights-only form."
    folder = tmp_path_factory.mktemp("run")
    write_weights_only(folder, tiny_dls)
    return folder


def other_fastai_pickle():
    "What a .pkl written by another fastai looks like to this one: it names a class this installation does not have."
    return b"\x80\x02cfastai.no_such_module\nLearner\nq\x00)\x81q\x01."


def truncated_pickle(tmp_path):
    f = tmp_path / "full.pkl"
    torch.save({"model": torch.zeros(1000)}, f)
    return f.read_bytes()[:300]


@pytest.mark.parametrize("kind", ["garbage", "empty", "truncated", "other_fastai"])
def test_unloadable_pickle_names_the_file_and_the_weights_only_form(tmp_path, kind):
    content = {"garbage": b"this is not a pickle", "empty": b"", "truncated": truncated_pickle(tmp_path),
               "other_fastai": other_fastai_pickle()}[kind]
    pkl = tmp_path / "stage1.pkl"; pkl.write_bytes(content)
    with pytest.raises(ModelError) as e:
        load_model(pkl, trust_pickle=True)
    msg = str(e.value)
    assert str(pkl) in msg and "weights-only" in msg and "stage1.json" in msg and "stage1.pth" in msg
    if kind == "other_fastai": assert "no_such_module" in msg or "lacks" in msg  # not fastai's UnboundLocalError
    with pytest.warns(UserWarning, match="runs code"), pytest.raises(ModelError, match="weights-only"):
        load_model(pkl)  # no --trust-pickle and no .json beside it: warned, then the same clear error


def test_unloadable_pickle_points_at_the_weights_only_file_beside_it(run_dir, tmp_path):
    pkl = run_dir / "stage1.pkl"; pkl.write_bytes(other_fastai_pickle())
    try:
        with pytest.raises(ModelError, match="drop --trust-pickle") as e:
            load_model(run_dir, trust_pickle=True)  # --trust-pickle with a run folder means its .pkl
        assert str(run_dir / "stage1.json") in str(e.value)
        assert load_model(run_dir).vocab == VOCAB  # without --trust-pickle the weights-only form is used
    finally: pkl.unlink()


def test_missing_model_names_the_path(tmp_path):
    for missing in (tmp_path / "stage1.json", tmp_path / "stage1.pkl", tmp_path / "no_run"):
        with pytest.raises(ModelError, match="not found") as e:
            load_model(missing)
        assert str(missing) in str(e.value)


def test_run_folder_without_the_stage(run_dir, tmp_path):
    with pytest.raises(ModelError) as e:
        find_model(run_dir, stage="stage2")
    msg = str(e.value)
    assert str(run_dir) in msg and "stage2.json" in msg and "stage1.json" in msg and "--epochs2 0" in msg
    with pytest.raises(ModelError, match="still training"):
        find_model(tmp_path)  # an empty folder: nothing exported (yet)


def test_pth_is_taken_as_its_weights_only_form(run_dir, tmp_path):
    assert find_model(run_dir / "stage1.pth") == (run_dir / "stage1.json", "weights")
    lone = tmp_path / "stage1.pth"; lone.write_bytes((run_dir / "stage1.pth").read_bytes())
    with pytest.raises(ModelError, match="stage1.json"):
        find_model(lone)
    other = tmp_path / "notes.txt"; other.write_text("x")
    with pytest.raises(ModelError, match="not a model file"):
        find_model(other)


@pytest.mark.parametrize("damage", ["json_garbage", "pth_missing", "pth_garbage"])
def test_broken_weights_only_form_is_a_clear_error(tmp_path, tiny_dls, damage):
    j = write_weights_only(tmp_path / "run", tiny_dls)
    if damage == "json_garbage": j.write_text("{not json")
    if damage == "pth_missing": j.with_suffix(".pth").unlink()
    if damage == "pth_garbage": j.with_suffix(".pth").write_bytes(b"\x00" * 50)
    with pytest.raises(ModelError) as e:
        load_model(j)
    assert str(j) in str(e.value) and "retrain" in str(e.value)
    j.with_suffix(".pkl").write_bytes(b"x")  # an exported learner beside it: say it may be an alternative
    with pytest.raises(ModelError, match="--trust-pickle"):
        load_model(j)


def inputs(tmp_path):
    good = [save_image(tmp_path / f"good{i}.jpg", seed=i) for i in range(2)]
    text = tmp_path / "notes.jpg"; text.write_text("not an image")
    return good, text, tmp_path / "gone.jpg"


def test_non_image_among_good_ones_is_skipped_and_the_rest_predicted(run_dir, tmp_path):
    (g0, g1), text, gone = inputs(tmp_path)
    results, skipped = predict_paths(load_model(run_dir), [g0, text, gone, g1], topk=10)
    assert [r["path"] for r in results] == [str(g0), str(g1)]
    assert all(len(r["top"]) == len(VOCAB) for r in results)  # --topk above the number of classes: all of them, ranked
    assert [s["path"] for s in skipped] == [str(text), str(gone)] and skipped[1]["error"] == "file not found"
    assert skipped[0]["error"]


def test_predict_cli_skips_a_non_image(run_dir, tmp_path):
    """The CLI as a user runs it, without a trained run (test_cli's version needs one).  A bad model file's one-line CLI
    error goes through the same `FashionError` path as test_cli's `test_cli_errors_are_one_line_before_any_work`."""
    (g0, g1), text, _ = inputs(tmp_path)
    p = subprocess.run([sys.executable, "-m", "fashion_fastai.predict", run_dir / "stage1.json",
                        g0, text, g1, "--json"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    assert [r["path"] for r in json.loads(p.stdout)["predictions"]] == [str(g0), str(g1)]
    assert f"skipped {text}" in p.stderr and "1 of 3 inputs skipped" in p.stderr


def test_processes_share_the_images_and_match_one_process(run_dir, tmp_path):
    "`--processes 2`: the same probabilities, in input order, from two worker processes; 1 process is not a pool."
    files = [save_image(tmp_path / f"img{i}.jpg", seed=i) for i in range(10)]
    one = load_model(run_dir)
    expected = one.probs(files, bs=4)
    with load_model(run_dir, processes=2) as two:
        assert isinstance(two, ProcessPredictor) and two.vocab == VOCAB
        got = two.probs(files, bs=4)  # 3 chunks of at most 4 images over 2 processes
        assert len(two.pool._processes) == 2
        assert two.probs([], bs=4).shape == (0, len(VOCAB))
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        ProcessPredictor(run_dir / "stage1.json", "weights", VOCAB, processes=1)


def test_predict_cli_processes(run_dir, tmp_path):
    files = [save_image(tmp_path / f"img{i}.jpg", seed=i) for i in range(5)]
    cmd = [sys.executable, "-m", "fashion_fastai.predict", run_dir / "stage1.json", tmp_path, "--json"]
    one, two = (subprocess.run(cmd + ["--processes", n], capture_output=True, text=True, timeout=900) for n in "12")
    assert one.returncode == two.returncode == 0, two.stderr
    one, two = (json.loads(p.stdout)["predictions"] for p in (one, two))
    assert [r["path"] for r in two] == [r["path"] for r in one] == [str(f) for f in sorted(files)]
    for r1, r2 in zip(one, two):  # one torch thread vs two may round the last digit differently
        assert [t["prob"] for t in r2["top"]] == pytest.approx([t["prob"] for t in r1["top"]], abs=2e-4)
    bad = subprocess.run(cmd + ["--processes", "0"], capture_output=True, text=True, timeout=900)
    assert bad.returncode == 2 and "--processes must be at least 1, got 0" in bad.stderr


def test_a_run_folder_from_before_the_all_classes_model_still_predicts(run_dir):
    "No all.json: stage one answers, and the user is told that it is not every article type."
    with pytest.warns(UserWarning, match="no all-classes model"):
        assert find_model(run_dir) == (run_dir / "stage1.json", "weights")
    assert find_model(run_dir, stage="stage1") == (run_dir / "stage1.json", "weights")  # asked for: no note
    with pytest.raises(ModelError, match="all.json"): find_model(run_dir, stage="all")


def test_the_all_classes_model_is_the_default(tmp_path, tiny_dls):
    write_weights_only(tmp_path, tiny_dls, "stage1")
    write_weights_only(tmp_path, tiny_dls, "all")
    assert find_model(tmp_path) == (tmp_path / "all.json", "weights")


def test_vocab_that_does_not_match_the_weights_is_an_error(tmp_path, tiny_dls):
    j = write_weights_only(tmp_path, tiny_dls, "all")
    meta = json.loads(j.read_text()); meta["vocab"].append("Ties"); j.write_text(json.dumps(meta))
    with pytest.raises(ModelError) as e: load_model(j)
    assert "all.json lists 4 classes" in str(e.value) and "all.pth has 3 outputs" in str(e.value)


def test_min_prob_marks_uncertain_predictions(run_dir, tmp_path):
    good, _, _ = inputs(tmp_path)
    predictor = load_model(run_dir, "stage1")
    plain, _ = predict_paths(predictor, good)  # the default: the review rule of the run (or REVIEW_PROB without one)
    rule = predictor.review_prob
    assert rule == predictor.answering.review.get("closed_set", REVIEW_PROB)  # a run without zero-shot classes
    # each probability is rounded to 4 decimals: within 5e-5 of the rule, either side is right
    assert all(r["uncertain"] == (r["top"][0]["prob"] < rule) or abs(r["top"][0]["prob"] - rule) <= 5e-5
               for r in plain)
    marked, _ = predict_paths(predictor, good, min_prob=1.)
    assert all(r["uncertain"] for r in marked) or max(r["top"][0]["prob"] for r in marked) == 1.
    assert [r["top"] for r in marked] == [r["top"] for r in plain]  # marked, never dropped or relabelled


@pytest.mark.parametrize("args, named", [(["--min-prob", "0"], "--min-prob"), (["--min-prob", "1.5"], "--min-prob"),
                                         (["--stage", "stage3"], "--stage")])
def test_predict_cli_refuses_bad_options(run_dir, tmp_path, args, named):
    good, _, _ = inputs(tmp_path)
    p = subprocess.run([sys.executable, "-m", "fashion_fastai.predict", str(run_dir), str(good[0]), *args],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and "predict: error:" in p.stderr and named in p.stderr and "Traceback" not in p.stderr


def cli_error(capsys, *args, **options) -> str:
    """`predict MODEL PATH... --options` run as the CLI runs it: one line `predict: error: ...`, exit status 2; that
    line."""
    # behind call_parse's argv parsing
    with pytest.raises(SystemExit) as e: main.__wrapped__(*map(str, args), **options)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("predict: error: "), err
    return err[0]


@pytest.fixture
def no_model_load(monkeypatch):
    "The model must not be loaded: the input is refused before (loading takes seconds, predicting longer)."
    import fashion_fastai.predict as predict
    monkeypatch.setattr(predict, "load_model_file", lambda *a, **k: pytest.fail("the model was loaded"))


def test_a_json_that_is_not_json_names_the_file(run_dir, tmp_path, capsys):
    bad = tmp_path / "stage1.json"; bad.write_text("stage1: resnet18\n")  # YAML, say, or a file cut short
    line = cli_error(capsys, bad, save_image(tmp_path / "a.jpg"))
    assert str(bad) in line and "not a readable JSON" in line and "retrain" in line


@pytest.mark.parametrize("which", ["config", "list", "future"])
def test_a_json_that_is_not_a_model_of_ours(run_dir, tmp_path, capsys, which):
    "The run's config.json handed as MODEL, JSON of another shape, and a weights-only file from a newer version."
    bad = tmp_path / ("config.json" if which == "config" else "stage1.json")
    meta = json.loads((run_dir / "stage1.json").read_text())
    bad.write_text(json.dumps({"config": {"arch": "resnet18", "epochs": 4}, "list": [1, 2],
                               "future": {**meta, "format": "fashion_fastai.weights/9"}}[which]))
    line = cli_error(capsys, bad, save_image(tmp_path / "a.jpg"))
    assert str(bad) in line
    if which == "future": assert "'fashion_fastai.weights/9'" in line and "upgrade" in line
    else: assert "not a weights-only model" in line and "stage1.json" in line and "run folder" in line
    if which == "config":  # beside a run's models: pointed at them
        (tmp_path / "stage1.json").write_text(json.dumps(meta))
        assert f"run folder {tmp_path} itself, or one of its models: stage1.json" in cli_error(capsys, bad, tmp_path)


def test_a_json_that_lacks_what_rebuilds_the_model(run_dir, tmp_path, capsys):
    meta = json.loads((run_dir / "stage1.json").read_text())
    bad = tmp_path / "stage1.json"; bad.write_text(json.dumps({k: v for k, v in meta.items() if k != "vocab"}))
    line = cli_error(capsys, bad, save_image(tmp_path / "a.jpg"))
    assert str(bad) in line and "lacks vocab" in line and "damaged" in line


def test_a_pkl_that_is_text(tmp_path, capsys):
    pkl = tmp_path / "stage1.pkl"; pkl.write_text("a note, not a pickle")
    line = cli_error(capsys, pkl, save_image(tmp_path / "a.jpg"), trust_pickle=True)
    assert str(pkl) in line and "stage1.json + stage1.pth" in line


@pytest.mark.parametrize("as_given", ["pth", "json"])
def test_a_truncated_pth_names_it(run_dir, tmp_path, capsys, as_given):
    "A state_dict cut short (an interrupted copy), whether the .pth or the .json beside it is given."
    for ext in ("json", "pth"): (tmp_path / f"stage1.{ext}").write_bytes((run_dir / f"stage1.{ext}").read_bytes())
    pth = tmp_path / "stage1.pth"; pth.write_bytes(pth.read_bytes()[:pth.stat().st_size // 2])
    line = cli_error(capsys, tmp_path / f"stage1.{as_given}", save_image(tmp_path / "a.jpg"))
    assert str(pth) in line and "cut short" in line and "retrain" in line


def test_a_run_folder_with_no_model(tmp_path, capsys, no_model_load):
    run = tmp_path / "run"; run.mkdir(); (run / "config.json").write_text("{}")  # a run killed before it exported
    line = cli_error(capsys, run, save_image(tmp_path / "a.jpg"))
    assert str(run) in line and "holds no model" in line and "still training" in line and "no config.json" not in line


def test_images_given_as_the_model(tmp_path, capsys, no_model_load):
    "The arguments swapped: a folder of photos, or a photo, where MODEL goes."
    photos = tmp_path / "photos"; photos.mkdir(); photo = save_image(photos / "a.jpg")
    line = cli_error(capsys, photos, photo)
    assert str(photos) in line and "no config.json" in line and "the first argument" in line
    line = cli_error(capsys, photo, photos)
    assert str(photo) in line and "is an image, not a model" in line


def test_an_image_folder_without_images(run_dir, tmp_path, capsys, no_model_load):
    empty = tmp_path / "photos"; (empty / "sub").mkdir(parents=True); (empty / "sub" / "list.txt").write_text("x")
    line = cli_error(capsys, run_dir / "stage1.json", save_image(tmp_path / "a.jpg"), empty)
    assert str(empty) in line and "holds no image files (1 other file;" in line and ".jpg" in line


def test_device_cuda_without_a_gpu(run_dir, tmp_path, capsys, monkeypatch, no_model_load):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = cli_error(capsys, run_dir / "stage1.json", save_image(tmp_path / "a.jpg"), device="cuda")
    assert "--device cuda" in line and "--device cpu" in line
    assert "--device must be one of auto, cpu, cuda" in cli_error(capsys, run_dir, tmp_path, device="gpu")


def test_a_truncated_image_is_a_counted_skip(run_dir, tmp_path, capsys):
    good = save_image(tmp_path / "good.jpg")
    cut = tmp_path / "cut.jpg"; cut.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    main.__wrapped__(str(run_dir / "stage1.json"), str(good), str(cut), json=True)
    out = capsys.readouterr()
    assert [r["path"] for r in json.loads(out.out)["predictions"]] == [str(good)]
    assert f"skipped {cut}: " in out.err and "truncated" in out.err and "1 of 2 inputs skipped" in out.err
