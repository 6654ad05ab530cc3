"""Argument checks shared by the layers, the public API and the command line: each error names
the argument, the value and what is allowed.

The same checks serve `Translator.translate`, `Classifier.predict`, `LanguageModel.sample`
and the options of the `translator` command (through `option_type`), so a bad value gets the
same answer from Python and from the shell.
"""

from __future__ import annotations

import math
import numbers


def check_choice(name, value, allowed):
    """Raises ValueError unless `value` is one of `allowed`."""
    if value not in allowed:
        choices = ", ".join(repr(choice) for choice in allowed)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name, value) -> int:
    if not _is_integer(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_non_negative_int(name, value) -> int:
    if not _is_integer(value) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    return int(value)


def check_number(name, value, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite real number in [low, high] (booleans and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not low <= value <= high:
        allowed = "a number" if (low, high) == (-math.inf, math.inf) else \
            f"a number >= {low}" if high == math.inf else f"a number in [{low}, {high}]"
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return float(value)


def check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")


def check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1); got {value!r}")


def check_texts(name, value) -> tuple[list[str], bool]:
    """``(texts, single)``: a list of strings, or one string (then ``single`` is True and the
    caller returns one result instead of a list). Anything else is a TypeError naming the
    argument, or the first item that is not a string."""
    if isinstance(value, str):
        return [value], True
    if value is None or isinstance(value, (bytes, bytearray, dict, numbers.Number)) \
            or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a string or a list of strings; got {type(value).__name__} {value!r:.60}")
    texts = list(value)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{index}] is {type(text).__name__} {text!r:.60}; every item must be a "
                            f"string (decode bytes with .decode('utf-8') first)")
    return texts, False


def check_path(name, value):
    """A file or directory argument: a string or a path-like object."""
    import os

    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise TypeError(f"{name} must be a path (a non-empty str or pathlib.Path); got {type(value).__name__} "
                        f"{value!r:.60}")


def option_type(convert, check):
    """An argparse ``type=`` that converts the option's text with ``convert`` and then applies
    ``check(name, value)``: ``--batch-size 0`` ends in argparse's usage error, exit status 2."""
    import argparse

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if convert is int else 'a number'}; "
                                             f"got {text!r}") from None
        try:
            return check("value", value)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = getattr(check, "__name__", "value")
    return parse


# Option types of the `translator` command (and `translator serve`): the same checks as the
# Python API; a bad value ends in argparse's usage error (exit status 2) naming the option.
POSITIVE_INT = option_type(int, check_positive_int)
NON_NEGATIVE_INT = option_type(int, check_non_negative_int)
NON_NEGATIVE_NUMBER = option_type(float, lambda name, value: check_number(name, value, 0.0))
POSITIVE_NUMBER = option_type(float, lambda name, value: check_number(name, value, 1e-9))
RATIO = option_type(float, lambda name, value: check_number(name, value, 1.0))
