"""The ``tactful`` command line: one entry point, subcommands dispatched lazily so that
``tactful --version`` and ``tactful serve`` start fast and never import torch up front.

Each subcommand lives in its capability's module as ``main(argv) -> int``:

=================  =====================================
``serve``          :mod:`tactful.lsp.server`
``model``          :mod:`tactful.backend.cli` (install / info)
``complete``       :mod:`tactful.completion.oneshot` (one-shot, for scripts)
``demo``           :mod:`tactful.tools.demo` (a real LSP session on a sample file)
``flag``           :mod:`tactful.flags.cli`
``log``            :mod:`tactful.feedback.cli` (export, import-cups, stats)
``train``          :mod:`tactful.cascade.train`
``replay``         :mod:`tactful.replay.cli`
``bench NAME``     :mod:`tactful.tools.bench.NAME` (latency, flag, ...)
=================  =====================================
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from tactful import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("tactful.lsp.server", "Run the language server (stdio by default)."),
    "model": ("tactful.backend.cli", "Install (convert) the embedded model, or show model info."),
    "complete": (
        "tactful.completion.oneshot",
        "Complete one file at one position and print the suggestion.",
    ),
    "demo": (
        "tactful.tools.demo",
        "Drive a real LSP session over a sample file and show what tactful does.",
    ),
    "flag": ("tactful.flags.cli", "Print the lines of files that look wrong."),
    "log": ("tactful.feedback.cli", "The feedback log: stats, export, import-cups."),
    "train": ("tactful.cascade.train", "Train the show/hide cascade from a feedback log."),
    "replay": ("tactful.replay.cli", "Replay logged sessions through show/hide policies."),
    "bench": ("tactful.tools.bench", "Benchmarks: latency, flag, ..."),
}

USAGE = "usage: tactful [--version] COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(
    f"  {name:<10} {desc}" for name, (_mod, desc) in COMMANDS.items()
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tactful`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"tactful {__version__}")
        return 0
    name, rest = args[0], args[1:]
    os.umask(0o077)  # every file tactful writes (logs, caches, models, reports) is its owner's
    if name not in COMMANDS:
        print(f"tactful: unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
