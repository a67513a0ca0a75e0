"""The Kaggle `styles.csv` layout, as constants every layer reads: the columns, the protocol's label, the attributes a
head can predict.  It imports nothing heavy (no pandas, fastai or torch), so the commands, the shipped runtime and the
answering code can name a column without loading the training stack."""
from __future__ import annotations

from pathlib import Path

COLUMNS = ['id', 'gender', 'masterCategory', 'subCategory', 'articleType', 'baseColour', 'season', 'year', 'usage',
           'productDisplayName']
REQUIRED = ['id', 'articleType', 'year']
LABEL = 'articleType'
# what else a head can predict
ATTRIBUTES = ('gender', 'masterCategory', 'subCategory', 'baseColour', 'season', 'usage')
MISSING_CODE = -100  # torch's cross-entropy `ignore_index`: the target of a row without the attribute
IMAGE_SIZE = (80, 60)  # (height, width) of the Kaggle "small" images: portrait 4:3


def image_id(path: Path) -> str:
    "A file's id as `styles.csv` writes it: its name without the extension, an integer without leading zeros."
    stem = Path(path).stem
    return str(int(stem)) if stem.isdigit() else stem
