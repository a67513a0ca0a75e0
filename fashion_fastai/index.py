"""`python -m fashion_fastai.index MODEL FOLDER... --out catalogue.npz`: an embedding index of a catalogue's photos,
for similar products (`predict --similar`, the web page).

The command lives here; its work is in `fashion_fastai.catalogue.index`."""
from fashion_fastai.cli import as_command
from fashion_fastai.catalogue.index import main

if __name__ == '__main__':
    as_command('index')
    main()
