"""`python -m fashion_fastai.audit RUN [--data DIR] --out audit/`: labels of a Kaggle-layout folder that disagree with
their near-duplicates or with the model, and a page to go through them.

The command lives here; its work is in `fashion_fastai.catalogue.audit`."""
from fashion_fastai.cli import as_command
from fashion_fastai.catalogue.audit import main

if __name__ == '__main__':
    as_command('audit')
    main()
