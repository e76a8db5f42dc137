"""``python -m regalia``: the ``regalia`` command."""

from regalia.cli.main import main

main()
