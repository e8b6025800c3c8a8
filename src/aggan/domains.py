"""The two domains and the two directions between them: the vocabulary every part shares.

Naming: the paper's source domain S is our domain ``a`` and its target T is ``b`` (the folder
names ``trainA``/``trainB``); ``a2b`` always means A to B.
"""

from __future__ import annotations

from typing import Literal

from aggan.errors import AgganError

Direction = Literal["a2b", "b2a"]
DIRECTIONS: tuple[Direction, Direction] = ("a2b", "b2a")
DOMAINS: tuple[str, str] = ("a", "b")


def source_domain(direction: Direction) -> str:
    """``"a2b"`` -> ``"a"``."""
    return direction[0]


def target_domain(direction: Direction) -> str:
    """``"a2b"`` -> ``"b"``."""
    return direction[-1]


def reverse(direction: Direction) -> Direction:
    """``"a2b"`` -> ``"b2a"``: the way back, for the cycle."""
    return "b2a" if direction == "a2b" else "a2b"


def parse_directions(value: str) -> tuple[Direction, ...]:
    """The ``--direction`` flag: ``a2b``, ``b2a`` or ``both``."""
    if value == "both":
        return DIRECTIONS
    if value not in DIRECTIONS:
        raise AgganError(f"--direction: expected a2b, b2a or both, got {value!r}")
    return (value,)  # type: ignore[return-value]
