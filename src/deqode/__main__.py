"""``python -m deqode``: the command line of :mod:`deqode.cli`."""

from deqode.cli import main

raise SystemExit(main())
