"""Configuration: JSON-schema validation with defaults, and errors that name the key."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from fishflow.errors import ConfigError

# Package data: a non-editable install validates configs too.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


def merged(base: dict, update: dict) -> dict:
    """`update` merged into a copy of `base`, key by key, as Snakemake merges config files."""
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def _with_defaults(validator_class):
    """Extend a validator so that it fills in `default` values of absent properties."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_of(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path)
    return path or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed)
        if unknown and allowed:
            return f"unknown key(s) {unknown}; allowed: {sorted(allowed)}"
    if error.validator == "propertyNames":
        return f"invalid name {error.instance!r}: {error.message}"
    return error.message


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Validate `config` in place, filling defaults; raise ConfigError naming the keys."""
    schema = schema if schema is not None else load_schema()
    validator_class = _with_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(validator_class(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        lines = [f"  config key {_key_of(e)}: {_describe(e)}" for e in errors]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    return config


def load_config(path: Path) -> dict:
    """Read and validate a YAML config file."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level")
    return validate_config(config)
