"""The config of a run started with `fishflow submit`, from the controller's snakemake command."""

from __future__ import annotations

from pathlib import Path

import yaml

from fishflow.errors import ConfigError
from fishflow.planning.config import merged, validate_config


def merged_config(configfiles: list[str]) -> dict:
    """The config Snakemake builds from these files: each later file merged into the first."""
    config: dict = {}
    for path in configfiles:
        try:
            config = merged(config, yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    return validate_config(config)


def configfiles(command: list[str]) -> list[str]:
    """The values of `--configfile` in a snakemake command line."""
    files, taking = [], False
    for arg in command:
        if arg.startswith("-"):
            taking = arg == "--configfile"
        elif taking:
            files.append(arg)
    return files
