"""Errors the user can act on. The CLIs print these as one line (what was wrong, with which file or value, and what to
do) and exit with status 2; anything else is a bug and keeps its traceback."""


class FashionError(Exception):
    "Base of the errors whose message is meant for the user."


class OptionError(FashionError, ValueError):
    "A command-line option has a value that cannot work."


class DataError(FashionError, ValueError):
    "A problem with the user's data files; the message says which file and what to do."


class WeightsError(FashionError, RuntimeError):
    "Starting weights were required but could not be had; the message says how to provide them."


class ModelError(FashionError, FileNotFoundError):
    "A model file given to predict is missing or cannot be loaded; the message names the file and the alternative."
