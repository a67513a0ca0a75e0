"""`python -m fashion_fastai.tag MODEL FOLDER... --out tags.csv`: a catalogue's photos tagged into a CSV in
`styles.csv`'s layout, resumable.

The command lives here; its work is in `fashion_fastai.catalogue.tag`."""
from fashion_fastai.cli import as_command
from fashion_fastai.catalogue.tag import main

if __name__ == '__main__':
    as_command('tag')
    main()
