"""Glue for the thin rule scripts: logging into the rule's log, clear errors, exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from fishflow.errors import FishflowError


def run(snakemake, body: Callable[[], None]) -> None:
    """Run `body` with logging to the rule's log (and stderr); a FishflowError fails the job
    with its message and no traceback."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if snakemake.log:
        handlers.append(logging.FileHandler(snakemake.log[0], encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        body()
    except FishflowError as exc:
        logging.getLogger("fishflow").error("%s", exc)
        sys.exit(1)
