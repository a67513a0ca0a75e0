"""From a Kaggle-layout folder to training batches: reading styles.csv, the holdout, decoding images, the demo data, the
pre-resized cache."""
import importlib


def __getattr__(name):
    """`fashion_fastai.data.X` for a name of the former module `fashion_fastai.data` (now `data.styles`), looked up only
    when asked, so that importing the package loads no fastai: a learner exported before the subpackages names its
    classes that way (`fashion_fastai.data.SplitColumn`)."""
    if name.startswith('__') or name == 'styles': raise AttributeError(name)
    styles = importlib.import_module('fashion_fastai.data.styles')
    try: return getattr(styles, name)
    except AttributeError: raise AttributeError(f"module 'fashion_fastai.data' has no attribute {name!r}") from None
