"""The ``gmmgan`` command line: ``gmmgan quickstart | fit | train | sample | eval | data``.

Each subcommand lives in its own module ``gmmgan.commands.<name>`` with two functions:

- ``add_parser(subparsers)`` adds its ``argparse`` sub-parser (``subparsers.add_parser(name, ...)``),
- ``run(args) -> int`` does the work and returns the exit status.

To add a command, write the module and append its name to ``_COMMANDS``. Command modules keep
heavy imports (torch, matplotlib) inside ``run`` so that ``gmmgan --help`` stays fast.

Ctrl-C prints where training stopped and the resume command, exit status 130; SIGTERM during
``gmmgan train`` is handled the same way (the same message and clean-up) with exit status 143,
128 + 15, as a shell reports a process ended by SIGTERM.

Errors a user can fix (``ValueError``, ``OSError`` such as ``FileNotFoundError``, a full disk) are
printed as one red ``error: ...`` line with exit status 2 and no traceback; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

from gmmgan._files import DISK_FULL_ERRNOS

# Subcommand modules under gmmgan.commands, in the order `gmmgan --help` lists them.
_COMMANDS: tuple[str, ...] = ("quickstart", "fit", "train", "sample", "eval", "data")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad arguments or bad input data, as argparse uses
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT
EXIT_TERMINATED = 143  # SIGTERM during training (timeout, docker stop, SLURM): 128 + 15, same message as Ctrl-C

# Consoles resolve sys.stdout/sys.stderr when they write, so output redirection (and pytest's
# capture) works even though these are created at import time.
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """Print ``error: message`` in red on stderr, on one line (no wrapping)."""
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors print like all other gmmgan errors: one line."""

    def error(self, message: str):  # type: ignore[override]
        print_error(f"{message} (see '{self.prog} --help')")
        raise SystemExit(EXIT_USAGE)


class _SubcommandParser(_ArgumentParser):
    """Sub-parsers also accept ``--debug`` after the command name (``gmmgan fit --debug``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        # SUPPRESS: an absent flag must not overwrite a `gmmgan --debug fit` given before it.
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="show the full traceback on errors")


def _version() -> str:
    from gmmgan import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand in ``_COMMANDS`` registered."""
    parser = _ArgumentParser(
        prog="gmmgan",
        description=(
            "Gaussian mixture models and GANs that work together, in PyTorch.\n\n"
            "Run 'gmmgan COMMAND --help' for the options of a command."
        ),
        epilog=(
            "examples:\n"
            "  gmmgan fit                          # 25-component GMM on the built-in 'grid' data\n"
            "  gmmgan fit ring -k 8                # the 8-Gaussian ring\n"
            "  gmmgan fit data.npy -k 10 --covariance-type diag -o model.safetensors\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gmmgan {_version()}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the full traceback on errors")
    subparsers = parser.add_subparsers(
        dest="command", title="commands", metavar="COMMAND", parser_class=_SubcommandParser
    )
    for name in _COMMANDS:
        module = importlib.import_module(f"gmmgan.commands.{name}")
        sub = module.add_parser(subparsers)
        # _parser: a usage error found after parsing (main) points at this command's --help.
        sub.set_defaults(_run=module.run, _parser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Never raises SystemExit, so it can be called in-process (tests, notebooks).
    """
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # argparse takes one run of KEY=VALUE positionals; more after an option (`gmmgan train a=1
        # --out runs b=2`) are overrides too.
        if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
            args.overrides = [*args.overrides, *extra]
        elif extra:
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_USAGE)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._run(args))
    except KeyboardInterrupt as e:  # training says where it stopped and how to resume
        print_error(str(e) or "interrupted")
        # 128 + the signal, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM (training handles it as Ctrl-C).
        return 128 + getattr(e, "signum", EXIT_INTERRUPTED - 128)
    except (ValueError, OSError, MemoryError, RuntimeError) as e:
        message = str(e) or type(e).__name__
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS and message.startswith("[Errno"):
            where = f" while writing '{e.filename}'" if e.filename else ""
            message = (f"no space left on the device{where} ({e.strerror}); free some space (or choose a "
                       "folder on another disk) and run the command again.")
        elif isinstance(e, OSError) and e.filename and message.startswith("[Errno"):  # the OS's own words
            message = (f"cannot use '{e.filename}': {e.strerror}; check that the path exists and that its "
                       "folder is writable, or choose another path.")
        lowered = message.lower()
        out_of_memory = isinstance(e, MemoryError) or any(
            words in lowered for words in ("out of memory", "can't allocate memory", "cannot allocate memory"))
        # Other RuntimeErrors are bugs, not bad input: keep their traceback.
        if args.debug or (isinstance(e, RuntimeError) and not out_of_memory):
            raise
        if out_of_memory:
            message = message.splitlines()[0]
            if args.command == "fit" and "; try " not in message:  # fit's own errors say what to try
                message += " (try a smaller --chunk-size or --dtype float32)"
        print_error(message)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
