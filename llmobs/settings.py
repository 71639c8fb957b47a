"""Declarative settings: each one declared once, read from flag > env > file.

A process declares a frozen dataclass whose fields are its settings. Each field
carries its help text in ``metadata``; its environment variable is
``LLMOBS_<FIELD>`` and its config-file key is the field name, either at the top
of the file (shared by every process) or under the process's section (its
``config_section`` class attribute, e.g. ``gateway:``), which wins. ``add_flags``
turns the dataclass into argparse flags and ``load`` builds the validated
object, raising ConfigError that names the bad key.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from llmobs.errors import ConfigError

T = TypeVar("T")

ENV_PREFIX = "LLMOBS_"
CONFIG_ENV = "LLMOBS_CONFIG"


_REGISTRY: list[type] = []


def settings_class(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen settings dataclass known to config validation."""
    frozen = dataclasses.dataclass(frozen=True)(cls)
    frozen.__repr__ = masked_repr  # type: ignore[method-assign]
    _REGISTRY.append(frozen)
    return frozen


def setting(default: Any, help: str, *, secret: bool = False) -> Any:
    """Declare one setting field with its default and its documentation."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(
            default_factory=lambda: default,
            metadata={"help": help, "secret": secret},
        )
    return dataclasses.field(default=default, metadata={"help": help, "secret": secret})


def env_name(field_name: str) -> str:
    return ENV_PREFIX + field_name.upper()


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_flags(
    parser: argparse.ArgumentParser, cls: type, *, title: str | None = None
) -> None:
    """Add one flag per setting of ``cls``; unset flags stay None.

    The first call on a parser also adds ``--config``; ``title`` puts the
    flags in a group of their own in ``--help``.
    """
    if not any("--config" in action.option_strings for action in parser._actions):
        parser.add_argument(
            "--config",
            default=None,
            help=f"YAML config file with settings by name (env {CONFIG_ENV})",
        )
    target = parser.add_argument_group(title) if title else parser
    for field in dataclasses.fields(cls):
        target.add_argument(
            flag_name(field.name),
            dest=field.name,
            default=None,
            metavar=field.name.upper(),
            help=f"{field.metadata.get('help', '')} "
            f"(env {env_name(field.name)}, default {_default_of(field)!r})",
        )


def load(cls: type[T], args: argparse.Namespace | None = None) -> T:
    """Build ``cls`` from flags, then environment, then config file, then defaults."""
    flags = vars(args) if args is not None else {}
    config = _section(
        _read_config(flags.get("config") or os.environ.get(CONFIG_ENV)), cls
    )
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields}
    values: dict[str, Any] = {}
    for field in fields:
        raw: Any = flags.get(field.name)
        if raw is None:
            raw = os.environ.get(env_name(field.name))
        if raw is None:
            raw = config.get(field.name)
        if raw is None:
            continue
        secret = bool(field.metadata.get("secret"))
        values[field.name] = _convert(field.name, hints[field.name], raw, secret)
    unknown = sorted(set(config) - known - _shared_keys() - _sections())
    if unknown:
        hint = ""
        if any(isinstance(config[key], dict) for key in unknown):
            hint = f" (the sections are: {', '.join(sorted(_sections()))})"
        raise ConfigError(
            f"unknown setting(s) in config file: {', '.join(unknown)}{hint}"
        )
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def describe(obj: Any) -> str:
    """One line per setting, secrets masked, for start-up logs."""
    parts = []
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if field.metadata.get("secret") and value:
            value = "***"
        parts.append(f"{field.name}={value}")
    return " ".join(parts)


def masked_repr(obj: Any) -> str:
    return f"{type(obj).__name__}({describe(obj)})"


def _shared_keys() -> set[str]:
    # One config file may serve every process, so keys of other processes'
    # settings are not errors; only keys no process knows are.
    return {f.name for cls in _REGISTRY for f in dataclasses.fields(cls)}


def _sections() -> set[str]:
    return {getattr(cls, "config_section", "") for cls in _REGISTRY} - {""}


def _section(config: dict[str, Any], cls: type) -> dict[str, Any]:
    """Top-level keys, overridden by the keys of ``cls``'s own section."""
    name = getattr(cls, "config_section", None)
    merged = {k: v for k, v in config.items() if k not in _sections()}
    own = config.get(name) if name else None
    if own is None:
        return merged
    if not isinstance(own, dict):
        raise ConfigError(f"config section {name} must be a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(own) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in section {name}: {', '.join(unknown)}")
    merged.update(own)
    return merged


def _read_config(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    return data


def _default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _convert(name: str, hint: Any, raw: Any, secret: bool = False) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw in ("", None):
            return None
        hint = inner[0]
        origin = typing.get_origin(hint)
    try:
        if hint is bool:
            return _to_bool(raw)
        if hint is int:
            return _to_int(raw)
        if hint is float:
            return _to_float(raw)
        if hint in (str, Path):
            return hint(_scalar(raw))
        if origin is tuple:
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(_scalar(i).strip() for i in items if _scalar(i).strip())
        if origin is dict:
            return _to_mapping(raw)
    except (TypeError, ValueError) as exc:
        shown = "the given value" if secret else repr(raw)
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(
            f"setting {name} ({env_name(name)}): cannot read {shown} as {kind}"
        ) from exc
    raise ConfigError(f"setting {name}: unsupported type {hint}")


def _scalar(raw: Any) -> str:
    """Text of a YAML scalar; a list or mapping where text belongs is an error."""
    if isinstance(raw, (dict, list, tuple, set)):
        raise TypeError(type(raw).__name__)
    return str(raw)


def _to_int(raw: Any) -> int:
    # YAML gives 4318.9 and true as float and bool; neither is an integer.
    if isinstance(raw, (bool, float)):
        raise ValueError(raw)
    return int(_scalar(raw).strip())


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(raw)
    value = float(_scalar(raw).strip())
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _to_mapping(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    pairs = [p for p in str(raw).split(",") if p.strip()]
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(pair)
        out[key.strip()] = value.strip()
    return out
