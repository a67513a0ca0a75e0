"""Loading the model `locate` found, in the form, on the device and in the processes asked for, with what it answers
with (its JSON's temperatures and zero-shot path, and the frozen ImageNet network that path needs)."""
from __future__ import annotations

from pathlib import Path

from fashion_fastai.answering.answering import Answering
from fashion_fastai.core.errors import ModelError, OptionError
from fashion_fastai.inference.locate import JOINED_FORMS, choose_engine, find_model, read_meta, weights_error
from fashion_fastai.answering.parts import read_part_answer
from fashion_fastai.inference.joined import JoinedPredictor
from fashion_fastai.inference.pool import ProcessPredictor
from fashion_fastai.inference.predictors import (OnnxPredictor, PickledLearner, Predictor, WeightsOnlyModel,
                                                 worker_device)
from fashion_fastai.networks import imagenet_classifier
from fashion_fastai.shipped.runtime import OnnxScorer

def load_model_file(path: Path, form: str, device='auto', processes: int = 1, threads: int = None,
                    closed_set: bool = False) -> Predictor:
    """`find_model`'s choice loaded on `device` (`resolve_device`): 'weights' as a `WeightsOnlyModel`, 'pickle' as a
    `PickledLearner`, 'onnx' (`onnx_form`) as an `OnnxPredictor` with `threads` threads; with its answering (the
    temperatures and zero-shot path in its JSON, and the frozen ImageNet network that path needs, unless `closed_set`).
    With `processes` > 1, a `ProcessPredictor` whose workers each load it (on `worker_device`) after this process has
    checked, on the CPU, that it loads."""
    if processes > 1:
        workers = worker_device(device)
        return ProcessPredictor(path, form, load_model_file(path, form, 'cpu', closed_set=closed_set), processes,
                                workers, load_model_file)
    if form in JOINED_FORMS: return load_joined(path, JOINED_FORMS[form], device, threads, closed_set)
    return with_answering(load_trained(path, form, device, threads), path, form, threads, closed_set)


def load_joined(path: Path, engine: str, device='auto', threads: int = None,
                closed_set: bool = False) -> JoinedPredictor:
    """The joined answer at `path` (a run's `joined.json`) with its members found in the run folder, each loaded with
    its answering on `engine`; the frozen ImageNet network once, from the first member with zero-shot classes."""
    path = Path(path)
    answer = read_part_answer(path)
    found = {n: choose_engine(find_model(path.parent, n), engine) for n in answer.members}
    members = {n: with_answering(load_trained(*f, device, threads), *f, threads, closed_set=True)
               for n, f in found.items()}
    scorer = None
    if not closed_set:
        first = next((n for n, m in members.items() if m.answering.has_zero_shot), None)
        if first: scorer = with_answering(members[first], *found[first], threads).scorer
    for m in members.values(): m.closed_set = closed_set
    return JoinedPredictor(answer, members, scorer, closed_set)


def with_answering(predictor: Predictor, path: Path, form: str, threads: int = None,
                   closed_set: bool = False) -> Predictor:
    """The predictor with the answering its model's JSON records (a `.pkl` reads the JSON beside it) and, for the
    zero-shot path, the frozen ImageNet network it names, run by the same engine (and in the model's memory layout).  A
    model from before calibration, or a `.pkl` alone, answers with its softmax; `predict` says so."""
    json_path = Path(path).with_suffix('.json')
    meta = read_meta(json_path) if json_path.is_file() else {}
    if meta: predictor.answering = Answering.from_meta(meta)
    else: predictor.answering = Answering(why_not=f"no {json_path.name} beside {Path(path).name} to read its "
                                                  f"calibration and zero-shot path from")
    predictor.closed_set = closed_set
    a = predictor.answering
    if not a.has_zero_shot or closed_set: return predictor
    network = json_path.parent / a.network['file']
    if form == 'onnx':
        graph = network.with_suffix('.onnx')
        if not graph.is_file():
            raise ModelError(f"{json_path.name}'s zero-shot path needs the ImageNet network's graph {graph}, which is "
                             f"missing: run `python -m fashion_fastai.export {json_path.parent}` again, or pass "
                             f"--closed-set to answer with the trained classes alone.")
        predictor.scorer = OnnxScorer(graph, a.network['size'], threads, predictor.device.type == 'cuda')
        return predictor
    if not network.is_file():
        raise ModelError(f"{json_path.name}'s zero-shot path needs the frozen ImageNet network {network}, which is "
                         f"missing: copy it from the run folder with the model, or pass --closed-set to answer with "
                         f"the trained classes alone.")
    net = imagenet_classifier.load(a.network['arch'], network)
    predictor.scorer = imagenet_classifier.Scorer(net, a.network['size'], a.network['mean'], a.network['std'],
                                                  predictor.device, channels_last=bool(meta.get('channels_last')))
    return predictor


def load_trained(path: Path, form: str, device='auto', threads: int = None) -> Predictor:
    "The trained model alone, as `load_model_file` loads it."
    if form == 'onnx': return OnnxPredictor(path, device, threads)
    if form == 'weights':
        try: return WeightsOnlyModel(path, device)
        except (ModelError, OptionError): raise
        except Exception as e:
            raise weights_error(path, f"Could not load the weights-only model {path} and the state_dict it names "
                                      f"({type(e).__name__}: {str(e)[:300]}). Both files come from the same run "
                                      f"folder") from e
    try: return PickledLearner(path, device)
    except OptionError: raise
    except Exception as e:
        twin = path.with_suffix('.json')
        # fastai's load_learner swallows an ImportError, then fails on `res`
        why = ("it names a module or class that this installation lacks" if isinstance(e, UnboundLocalError) else
               f"{type(e).__name__}: {str(e)[:300]}")
        raise ModelError(f"Could not load the exported learner {path} ({why}). A .pkl loads "
                         f"only if intact and with the fastai/torch versions that wrote it; use the weights-only form "
                         + (f"{twin} instead (it is right there: drop --trust-pickle)." if twin.is_file() else
                            f"{twin.name} + {path.with_suffix('.pth').name} from the same run instead, which loads "
                            f"with any version.")) from e


def load_model(model: Path, stage: str = None, trust_pickle: bool = False, processes: int = 1, device='auto',
               engine: str = 'torch', closed_set: bool = False) -> Predictor:
    """The model `find_model` chooses, loaded by `load_model_file` on `engine` (ENGINES); a file that cannot be loaded
    gives a `ModelError` naming it and what to use."""
    return load_model_file(*choose_engine(find_model(model, stage, trust_pickle), engine), device, processes,
                           closed_set=closed_set)
