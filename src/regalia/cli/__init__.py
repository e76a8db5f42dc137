"""The ``regalia`` command line; the entry point is :func:`regalia.cli.main.main`."""
