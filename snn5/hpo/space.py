"""The ``search_space:`` of a run config: dotted config paths mapped to ranges or choices.

YAML::

    search_space:
      train.optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      model.hidden: {choices: [[128], [256], [512]]}
      model.timesteps: {low: 4, high: 16, step: 4}
      model.neuron.tau_mem: {low: 1.0e-3, high: 2.0e-2, type: float}

A range's type is that of the base config's value (int or float) unless ``type:`` says it
(an unset value: int if both bounds are ints, else float); ``choices:`` takes any YAML values.
Every path must exist in the resolved base config or be a new key that the schema accepts in a
free mapping (the parameters of a plasticity rule: ``plasticity.rule.tau_plus``), and every
bound and choice is validated as a run config before a study starts.
"""

from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import optuna

from snn5.config import ConfigError, RunConfig, config_from_dict, config_to_dict


class SearchSpaceError(ConfigError):
    """The ``search_space:`` mapping is invalid; the message names the entry and the fix."""


class ParamKind(StrEnum):
    """What a search-space entry samples."""

    FLOAT = "float"
    INT = "int"
    CHOICE = "choice"


@dataclass(frozen=True)
class ParamSpec:
    """One search-space entry.

    Args:
        path: dotted config path, e.g. ``train.optimizer.lr``.
        kind: float or int range, or a set of choices.
        low, high: inclusive bounds of a range.
        log: sample the range uniformly in log space (bounds > 0).
        step: grid step of a range (None: continuous float, 1 for int).
        choices: the values of a choice entry.
    """

    path: str
    kind: ParamKind
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def values_to_check(self) -> tuple[Any, ...]:
        """The values validated against the run schema before a study starts."""
        if self.kind is ParamKind.CHOICE:
            return self.choices
        return (self.low, self.high)

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample this entry in ``trial`` (Optuna names the parameter by its path)."""
        if self.kind is ParamKind.CHOICE:
            index = trial.suggest_categorical(self.path, list(range(len(self.choices))))
            return copy.deepcopy(self.choices[index])   # lists are not Optuna choice values
        if self.kind is ParamKind.INT:
            return trial.suggest_int(self.path, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def value_of(self, params: dict[str, Any]) -> Any:
        """The config value of a finished trial's Optuna ``params``."""
        raw = params[self.path]
        return copy.deepcopy(self.choices[raw]) if self.kind is ParamKind.CHOICE else raw


def leaf_paths(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.optimizer.lr": 0.002, ...}``: every leaf of a nested mapping."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(leaf_paths(value, path))
        else:
            out[path] = value
    return out


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted ``path`` in a nested mapping in place (its sections must exist)."""
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value


def with_values(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with the dotted-path ``values`` set."""
    data = copy.deepcopy(data)
    for path, value in values.items():
        set_path(data, path, value)
    return data


_RANGE_KEYS = {"low", "high", "log", "step", "type"}


def _number(path: str, entry: dict[str, Any], key: str) -> float:
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SearchSpaceError(f"search_space.{path}.{key}: must be a finite number, got "
                               f"{value!r}")
    return value


def _parse_range(path: str, entry: dict[str, Any], base_value: Any) -> ParamSpec:
    unknown = set(entry) - _RANGE_KEYS
    if unknown or not {"low", "high"} <= set(entry):
        raise SearchSpaceError(
            f"search_space.{path}: a range needs low and high (and optionally log, step, type)"
            f"; got keys {sorted(entry)}. Write {{low: L, high: H}} or {{choices: [...]}}.")
    if "type" in entry:
        try:
            kind = ParamKind(entry["type"])
        except ValueError:
            raise SearchSpaceError(f"search_space.{path}.type: {entry['type']!r} is not one of "
                                   "float, int") from None
        if kind is ParamKind.CHOICE:
            raise SearchSpaceError(f"search_space.{path}.type: choice entries are written "
                                   "{choices: [...]}, not type: choice")
    elif base_value is None:          # unset (null or a key of a free mapping): the bounds say
        ints = all(isinstance(entry[k], int) and not isinstance(entry[k], bool)
                   for k in ("low", "high"))
        kind = ParamKind.INT if ints else ParamKind.FLOAT
    elif isinstance(base_value, bool) or not isinstance(base_value, int | float):
        raise SearchSpaceError(
            f"search_space.{path}: the base value {base_value!r} is not a number, so the range "
            "type is unknown; add type: float or type: int, or use {choices: [...]}")
    else:
        kind = ParamKind.INT if isinstance(base_value, int) else ParamKind.FLOAT
    low, high = _number(path, entry, "low"), _number(path, entry, "high")
    log = entry.get("log", False)
    if not isinstance(log, bool):
        raise SearchSpaceError(f"search_space.{path}.log: must be true or false, got {log!r}")
    step = _number(path, entry, "step") if entry.get("step") is not None else None
    if not low < high:
        raise SearchSpaceError(f"search_space.{path}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise SearchSpaceError(f"search_space.{path}: a log range needs low > 0, got {low}")
    if step is not None and step <= 0:
        raise SearchSpaceError(f"search_space.{path}.step: must be > 0, got {step}")
    if log and step is not None and not (kind is ParamKind.INT and step == 1):
        raise SearchSpaceError(f"search_space.{path}: log and step cannot be combined (Optuna "
                               "samples a log range continuously); drop one of them")
    if kind is ParamKind.INT and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise SearchSpaceError(f"search_space.{path}: an int range needs integer low, high and "
                               f"step, got low={low}, high={high}, step={step}")
    return ParamSpec(path, kind, low, high, log, step)


def _parse_entry(path: str, entry: Any, base_value: Any) -> ParamSpec:
    if not isinstance(entry, dict):
        raise SearchSpaceError(f"search_space.{path}: must be a mapping such as "
                               f"{{low: 1.0e-4, high: 1.0e-2, log: true}} or {{choices: [...]}}, "
                               f"got {entry!r}")
    if "choices" not in entry:
        return _parse_range(path, entry, base_value)
    choices = entry["choices"]
    if set(entry) != {"choices"}:
        raise SearchSpaceError(f"search_space.{path}: a choice entry has only the key choices, "
                               f"got {sorted(entry)}")
    if not isinstance(choices, list) or not choices:
        raise SearchSpaceError(f"search_space.{path}.choices: must be a non-empty list, got "
                               f"{choices!r}")
    return ParamSpec(path, ParamKind.CHOICE, choices=tuple(choices))


def _unknown_key(path: str, leaves: dict[str, Any], detail: str) -> SearchSpaceError:
    close = difflib.get_close_matches(path, list(leaves), n=5, cutoff=0.5)
    hint = f"; close valid keys: {', '.join(close)}" if close else ""
    return SearchSpaceError(f"search_space: '{path}' is not a key of the run config{hint}. "
                            "Keys are dotted paths of the resolved config (see config.yaml in "
                            f"any run folder).{detail}")


def parse_search_space(raw: Any, base: RunConfig) -> tuple[ParamSpec, ...]:
    """Parse and check a ``search_space:`` mapping against the base run config.

    Args:
        raw: the YAML value of ``search_space:`` (dotted path -> range or choices).
        base: the validated base config (its resolved values give each range's type).

    Returns:
        One spec per entry, in file order.

    Raises:
        SearchSpaceError: an entry is malformed, names no config field (the message lists the
            closest valid paths), or one of its bounds/choices makes an invalid run config.
    """
    if not isinstance(raw, dict) or not raw:
        raise SearchSpaceError("search_space: must be a non-empty mapping of dotted config paths "
                               "to ranges or choices, e.g. train.optimizer.lr: "
                               "{low: 1.0e-4, high: 1.0e-2, log: true}")
    resolved = config_to_dict(base)
    leaves = leaf_paths(resolved)
    sections = {p.rsplit(".", 1)[0] for p in leaves if "." in p}
    specs = []
    for path, entry in raw.items():
        path = str(path)
        known = path in leaves or path in sections
        parent = path.rpartition(".")[0]
        if not known and parent not in sections:
            raise _unknown_key(path, leaves, "")
        spec = _parse_entry(path, entry, leaves.get(path))
        if not known:            # a new key of a free mapping (e.g. plasticity.rule.tau_plus)?
            try:
                config_from_dict(with_values(resolved, {path: spec.values_to_check()[0]}))
            except ConfigError as exc:
                raise _unknown_key(path, leaves, f"\n{exc}") from None
        for value in spec.values_to_check():
            try:
                config_from_dict(with_values(resolved, {path: value}),
                                 source=f"search_space.{path} = {value!r}")
            except ConfigError as exc:
                raise SearchSpaceError(f"{exc}\nNarrow search_space.{path} to valid values.") \
                    from None
        specs.append(spec)
    return tuple(specs)
