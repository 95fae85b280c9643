"""Rulebook instructions as edits of a tabular architecture, derived from the capacity order.

A tabular space lists its operations; ordered from least to most capacity, with the operations
that play a *role* named (``none`` cuts a path, ``identity`` passes the input through in place of
a layer, ``skip`` is a skip connection), every one-position change is exactly one instruction:

============================  =======  =========================================================
change at one position        code     why
============================  =======  =========================================================
anything -> skip              ASC      a skip connection is added (replacing what was there)
none -> identity              ASC      the cut path passes the input through
skip -> none or identity      RSC      the skip connection goes
a layer -> none or identity   RCL      the layer goes
a role -> a layer             ACL      a layer is added where there was none
a layer -> a larger layer     AMK      more capacity: more or larger kernels
a layer -> a smaller layer    RK       less capacity
============================  =======  =========================================================

A "layer" is any operation without a role; "larger" follows the capacity order. The other
instructions (dense layers, neurons, dropout, regularisation, initialisation) have no meaning in a
space of operations and map to no edit. Built-in spaces use the same mechanism as a user's space
file: NAS-Bench-Macro's order is Identity (role identity) < MB3_K3 < MB6_K5; NAS-Bench-201's is
none (role none) < skip_connect (role skip) < avg_pool_3x3 < nor_conv_1x1 < nor_conv_3x3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from archsmith.errors import InputError

__all__ = ["ROLES", "CapacityMoves", "Role", "capacity_moves"]

Role = Literal["none", "identity", "skip"]
ROLES: Final[tuple[Role, ...]] = ("none", "identity", "skip")

#: The instructions an operation space can express, in the order Table 3 lists them.
SPACE_INSTRUCTIONS: Final = ("ACL", "ASC", "RCL", "RSC", "AMK", "RK")


@dataclass(frozen=True)
class CapacityMoves:
    """Which instruction each one-position change enacts, from the capacity order and roles.

    ``choices`` are the operation names in the space's own encoding order, ``capacity`` the
    choice indices from least to most capacity, ``roles`` maps a choice index to its role.
    """

    choices: tuple[str, ...]
    capacity: tuple[int, ...]
    roles: Mapping[int, Role] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.choices)
        if n < 2:
            raise InputError(f"a space needs at least 2 choices, got {list(self.choices)}")
        if sorted(self.capacity) != list(range(n)):
            raise InputError(
                f"the capacity order {list(self.capacity)} must list each of the {n} choice"
                f" indices 0..{n - 1} once"
            )
        for index, role in self.roles.items():
            if not 0 <= index < n:
                raise InputError(f"role {role!r} names choice {index}, which is not in 0..{n - 1}")
            if role not in ROLES:
                raise InputError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
        named = list(self.roles.values())
        if len(set(named)) != len(named):
            raise InputError(f"each role may name one choice only; got {dict(self.roles)}")
        if len(self.roles) == n:
            raise InputError("at least one choice must be a layer (have no role)")

    @property
    def rank(self) -> dict[int, int]:
        """Each choice index's place in the capacity order (0 = the least capacity)."""
        return {c: r for r, c in enumerate(self.capacity)}

    def lowest(self) -> int:
        """The choice with the least capacity."""
        return self.capacity[0]

    def highest(self) -> int:
        """The choice with the most capacity."""
        return self.capacity[-1]

    def role_choice(self, role: Role) -> int | None:
        """The choice that plays ``role``, if any."""
        return next((c for c, r in self.roles.items() if r == role), None)

    def instruction(self, src: int, dst: int) -> str:
        """The instruction that changes a position from choice ``src`` to ``dst`` (src != dst)."""
        if src == dst:
            raise ValueError("a move changes the choice")
        have, want = self.roles.get(src), self.roles.get(dst)
        if want == "skip" or (want == "identity" and have == "none"):
            return "ASC"
        if want in ("none", "identity"):
            return "RSC" if have in ("skip", "identity") else "RCL"
        if have is not None:
            return "ACL"
        return "AMK" if self.rank[dst] > self.rank[src] else "RK"

    def moves(self, arch: Sequence[int], code: str) -> list[tuple[int, int]]:
        """Every (position, new choice) that instruction ``code`` makes of ``arch``."""
        return [
            (i, c)
            for i, have in enumerate(arch)
            for c in range(len(self.choices))
            if c != have and self.instruction(have, c) == code
        ]

    def edit(self, src: int, dst: int) -> str:
        """The change in words, e.g. 'nor_conv_3x3 -> skip_connect'."""
        return f"{self.choices[src]} -> {self.choices[dst]}"

    def describe(self) -> dict[str, list[str]]:
        """Every instruction's edits in words, for documentation and the trace."""
        out: dict[str, list[str]] = {}
        for src in self.capacity:
            for dst in self.capacity:
                if src != dst:
                    out.setdefault(self.instruction(src, dst), []).append(self.edit(src, dst))
        return out


def capacity_moves(
    choices: Sequence[str],
    capacity: Sequence[int] | None = None,
    roles: Mapping[int, Role] | None = None,
) -> CapacityMoves:
    """The mapping for a space; without ``capacity`` the choices are taken as already ordered."""
    order = tuple(capacity) if capacity is not None else tuple(range(len(choices)))
    return CapacityMoves(tuple(choices), order, dict(roles or {}))
