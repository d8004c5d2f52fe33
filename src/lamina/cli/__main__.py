"""``python -m lamina.cli``: the ``lamina`` command."""

from . import main

raise SystemExit(main())
