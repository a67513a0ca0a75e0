"""fashion_fastai: two-stage transfer learning on the Kaggle "Fashion Product Images" data set, the fastai way."""
import warnings

from fashion_fastai.core import moved

__version__ = "0.1.0"

# fastai decorates a few activation helpers with `torch.jit.script` at import, and torch 2.10+ warns about that on every
# run of every command; the user can do nothing about it, so it only hides the warnings that matter.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

moved.install()  # learners exported before the subpackages name their classes by the old modules
