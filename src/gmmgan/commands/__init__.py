"""Subcommands of the ``gmmgan`` command line, one module each (see :mod:`gmmgan.cli`).

A command module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args) -> int``, and its name is listed in ``gmmgan.cli._COMMANDS``.
"""
