"""What every ``archsmith`` command shares: the consoles and how bad input ends a command."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from archsmith.errors import InputError

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_LIMIT_MISSED",
    "EXIT_LLM_UNAVAILABLE",
    "EXIT_NO_CANDIDATE",
    "OWN_DATA",
    "SANDBOX_HELP",
    "DatasetOption",
    "ImageSizeOption",
    "TargetOption",
    "check_sandbox",
    "err",
    "fail",
    "out",
]

#: Exit code for bad input (a missing file, an unknown name, a value out of range).
EXIT_BAD_INPUT = 2
#: A run that ended without a single candidate evaluated: there is no model.
EXIT_NO_CANDIDATE = 3
#: A run whose best model misses a hard limit (max_params, max_latency_ms, max_model_size_mb).
EXIT_LIMIT_MISSED = 4
#: The LLM stayed unreachable for the whole outage window: the run is saved, resume it later.
EXIT_LLM_UNAVAILABLE = 5
out = Console()
err = Console(stderr=True)


#: The --sandbox option's help, the same on every command that runs candidate code.
SANDBOX_HELP = (
    "Where candidate code runs: local (bubblewrap: the system's, else the bundled one), docker,"
    " or none: NO isolation, the code can read your files, use the network and forge its own"
    " scores; only for code you trust."
)

#: Where --dataset and --image-size are explained, the same on plan, run and evaluate.
OWN_DATA = (
    "the path of your own data (a folder of class folders of images, an .npz of images and"
    " labels, a .csv or .jsonl of text and label)"
)
DatasetOption = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help=f"A registry name or {OWN_DATA}; without it the request names the data.",
    ),
]
ImageSizeOption = Annotated[
    int | None,
    typer.Option(
        "--image-size",
        min=1,
        max=1024,
        help="Bring your own images to N x N pixels (default: chosen from the data, the median"
        " shorter side capped at 32; the plan says which).",
    ),
]

TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="Measure speed, size and accuracy where the model will run:"
        " RUNTIME[:threads=N,batch=N,precision=fp32|int8], e.g. onnxruntime:threads=1"
        " (`archsmith targets` lists the runtimes; default: torch on this machine).",
    ),
]


def check_sandbox(name: str) -> str:
    """``name`` if it is a sandbox backend, else the bad-input exit saying which exist."""
    if name not in ("local", "docker", "none"):
        raise fail(InputError(f"--sandbox must be local, docker or none, not {name!r}"))
    return name


def fail(e: InputError) -> typer.Exit:
    """Print the input error and return the exit to raise (code 2)."""
    err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False)
    return typer.Exit(EXIT_BAD_INPUT)
