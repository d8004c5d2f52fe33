"""``python -m lamina.demo``: the same as ``lamina demo`` (the tour is :mod:`lamina.cli.demo`)."""

from .cli.demo import main

if __name__ == "__main__":
    main()
