"""`python -m fashion_fastai.prepare`: a pre-resized copy of a Kaggle folder, so that training on the full-size data
set is not bound by decoding.

The command lives here; its work is in `fashion_fastai.data.prepare`."""
from fashion_fastai.cli import as_command
from fashion_fastai.data.prepare import main

if __name__ == '__main__':
    as_command('prepare')
    main()
