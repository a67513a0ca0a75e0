"""Inference: finding a model (`locate`), loading it behind one interface (`predictors`, `load`), sharing the work among
processes (`pool`) and the answers users get (`answers`).  Nothing here imports training code.

The names below are the package's inference API (`fashion_fastai.inference.load_model`, `WeightsOnlyModel`,
`predict_paths`, ...), as README shows them."""
from fashion_fastai.answering.answering import REVIEW_PROB
from fashion_fastai.core.models import ANSWER_ORDER, FIRST
from fashion_fastai.inference.answers import answer_files, answer_readable, answering_note, answers, predict_paths
from fashion_fastai.inference.load import load_model, load_model_file, load_trained, with_answering
from fashion_fastai.inference.locate import (ENGINES, IMAGE_EXTS, MODEL_HELP, WEIGHTS_FORMAT, choose_engine,
                                             default_model, expand_paths, exported, file_form, find_model,
                                             missing_model, models_help, onnx_form, read_meta, readable)
from fashion_fastai.inference.pool import ProcessPredictor
from fashion_fastai.inference.predictors import (DEVICES, OnnxPredictor, PickledLearner, Predictor, WeightsOnlyModel,
                                                 resolve_device, worker_device)

__all__ = ['REVIEW_PROB', 'ANSWER_ORDER', 'FIRST',
           'answer_files', 'answer_readable', 'answering_note', 'answers', 'predict_paths',
           'load_model', 'load_model_file', 'load_trained', 'with_answering',
           'ENGINES', 'IMAGE_EXTS', 'MODEL_HELP', 'WEIGHTS_FORMAT', 'choose_engine', 'default_model', 'expand_paths',
           'exported', 'file_form', 'find_model', 'missing_model', 'models_help', 'onnx_form', 'read_meta', 'readable',
           'ProcessPredictor',
           'DEVICES', 'OnnxPredictor', 'PickledLearner', 'Predictor', 'WeightsOnlyModel', 'resolve_device',
           'worker_device']
