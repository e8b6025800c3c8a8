"""The two domains and the two directions between them: the vocabulary every part shares.

Naming: the paper's source domain S is our domain ``a`` and its target T is ``b`` (the folder
names ``trainA``/``trainB``); ``a2b`` always means A to B.
"""

from __future__ import annotations

from typing import Literal

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
