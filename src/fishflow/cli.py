"""The `fishflow` command. Subcommands register themselves in `main`'s parser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import compare


def _compare(args: argparse.Namespace) -> None:
    print(compare.run(args.a, args.b))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fishflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("compare", help=compare.__doc__.splitlines()[0])
    sub.add_argument("a", type=Path, help="report.json of run A (the baseline)")
    sub.add_argument("b", type=Path, help="report.json of run B")
    sub.set_defaults(handler=_compare)
    args = parser.parse_args(argv)
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
