"""Typed options. Strings are turned into these once, at the config boundary."""

from __future__ import annotations

from enum import StrEnum


class Option(StrEnum):
    """Base of the library's typed options: ``parse`` turns a YAML/CLI word into a member, or
    fails with the list of valid words."""

    @classmethod
    def parse(cls, value: Option | str) -> Option:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown {cls.__name__.lower()} '{value}'; valid: "
                             f"{', '.join(m.value for m in cls)}") from None


class Reset(Option):
    """What the membrane does after a spike.

    SUBTRACT: ``v <- v - v_th`` (soft reset; keeps the residue, rate coding stays linear).
    ZERO:     ``v <- 0`` (hard reset).
    NONE:     no reset (the neuron keeps integrating; useful for analysis).
    """

    SUBTRACT = "subtract"
    ZERO = "zero"
    NONE = "none"
