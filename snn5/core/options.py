"""Typed options of the physics layer. Strings are turned into these once, at the config boundary."""

from __future__ import annotations

from enum import StrEnum


class Reset(StrEnum):
    """What the membrane does after a spike.

    SUBTRACT: ``v <- v - v_th`` (soft reset; keeps the residue, rate coding stays linear).
    ZERO:     ``v <- 0`` (hard reset).
    NONE:     no reset (the neuron keeps integrating; useful for analysis).
    """

    SUBTRACT = "subtract"
    ZERO = "zero"
    NONE = "none"

    @classmethod
    def parse(cls, value: Reset | str) -> Reset:
        """Turn ``value`` into a Reset, with an error that lists the valid names."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown reset '{value}'; valid: "
                             f"{', '.join(m.value for m in cls)}") from None
