"""fashion_fastai: two-stage transfer learning on the Kaggle "Fashion Product Images" data set, the fastai way."""
__version__ = "0.1.0"
