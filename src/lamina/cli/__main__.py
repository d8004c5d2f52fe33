"""``python -m lamina.cli``: the ``lamina`` command."""

from . import run

run()
