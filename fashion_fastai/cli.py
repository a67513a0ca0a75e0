"""What the command-line programs (`train`, `predict`, `prepare`, `app`, `export`, `tag`, `index`, `audit`) share: a
usage line that shows the command as typed, and a user error (`FashionError`) as one line `NAME: error: ...` on stderr
with exit status 2, as argparse reports a bad option.  Anything else is a bug and keeps its traceback."""
from __future__ import annotations

import sys
from functools import wraps

from fashion_fastai.core.errors import FashionError


def fail(name: str, error) -> None:
    "Report a user error the way argparse does, and exit with its status."
    print(f"{name}: error: {error}", file=sys.stderr)
    sys.exit(2)


def as_command(name: str) -> None:
    """The usage line says `python -m fashion_fastai.NAME`, as the user typed it (argparse would say the file's name).
    A command module whose work lives in a subpackage calls this before its `main()`."""
    sys.argv[0] = f'python -m fashion_fastai.{name}'


def command(name: str):
    """Decorate a fastcore `call_parse` entry point (put it under `@call_parse`): `python -m fashion_fastai.NAME` in the
    usage line, and its `FashionError`s reported by `fail`."""
    def deco(main):
        if main.__module__ == '__main__': as_command(name)

        @wraps(main)
        def wrapped(*args, **kwargs):
            try: return main(*args, **kwargs)
            except FashionError as e: fail(name, e)
        return wrapped
    return deco
