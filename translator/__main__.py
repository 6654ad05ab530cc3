"""`python -m translator` is the `translator` command."""

from translator.cli import main

raise SystemExit(main())
