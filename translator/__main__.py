"""`python -m translator` is the `translator` command."""

from translator.cli import console

console()
