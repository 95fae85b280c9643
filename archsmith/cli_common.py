"""What every ``archsmith`` command shares: the consoles and how bad input ends a command."""

from __future__ import annotations

import typer
from rich.console import Console

from archsmith.errors import InputError

__all__ = ["EXIT_BAD_INPUT", "err", "fail", "out"]

#: Exit code for bad input (a missing file, an unknown name, a value out of range).
EXIT_BAD_INPUT = 2
out = Console()
err = Console(stderr=True)


def fail(e: InputError) -> typer.Exit:
    """Print the input error and return the exit to raise (code 2)."""
    err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False)
    return typer.Exit(EXIT_BAD_INPUT)
