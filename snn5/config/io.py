"""YAML <-> RunConfig, dotted overrides, and errors that name the field and the fix."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from snn5.config.schema import RunConfig


class ConfigError(ValueError):
    """A config file or override is invalid; the message lists every problem by field."""


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid config ({source}):"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (remove it or check its spelling)"
        elif e["type"] == "missing":
            msg = "required key missing"
        elif "input" in e and e["type"] not in ("value_error",):
            msg += f" (got {e['input']!r})"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_value(text: str) -> Any:
    """An override value: YAML scalars/lists/maps (``3``, ``1e-3``, ``true``, ``[64, 128]``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a nested mapping (a copy is returned)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like key.sub=value, e.g. "
                              "train.epochs=3")
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{'.'.join(parts[:i + 1])}' is a value, "
                                  "not a section")
            node = child
        node[parts[-1]] = parse_value(raw)
    return data


def config_from_dict(data: dict[str, Any], overrides: list[str] = (), *,
                     source: str = "config") -> RunConfig:
    """Validate a mapping (after overrides) into a RunConfig, or raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections "
                          f"(seed, paradigm, data, model, train, measure), got {type(data).__name__}")
    data = apply_overrides(data, list(overrides))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format(err, source)) from None


SEARCH_SPACE = "search_space"
"""Top-level YAML key of a hyper-parameter search space (read by ``snn5.hpo``, not a run key)."""


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw mapping of a YAML run config (no overrides, not validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; configs/ in the repository has "
                          "examples (configs/digits_mlp.yaml, configs/mnist_conv.yaml)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return data


def load_config(path: str | os.PathLike, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML run config, apply ``key=value`` overrides, validate.

    A top-level ``search_space:`` mapping (the hyper-parameter search of ``snn5 tune``) is set
    aside: the result is the base run config.
    """
    data = read_config_file(path)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != SEARCH_SPACE}
    return config_from_dict(data, overrides, source=str(path))


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain JSON/YAML-ready mapping of a config with every default filled in."""
    return cfg.model_dump(mode="json")


def dump_config(cfg: RunConfig) -> str:
    """The fully resolved config as YAML text."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: RunConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config to ``path`` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dump_config(cfg))
    os.replace(tmp, path)
    return path


def config_diff(a: RunConfig, b: RunConfig) -> list[str]:
    """``["train.epochs: 3 -> 5", ...]``: the fields where two configs differ."""
    out: list[str] = []

    def walk(x: Any, y: Any, prefix: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}.{k}" if prefix else k)
        elif x != y:
            out.append(f"{prefix}: {x!r} -> {y!r}")

    walk(config_to_dict(a), config_to_dict(b), "")
    return out
