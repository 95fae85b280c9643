"""The program format's checks that need no torch: the host runs them on a finished job's files.

See ``archsmith.scoring.program`` for the format itself. Everything here is standard library, so the
host can refuse a forged or damaged program before any other process reads it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from archsmith.files import UntrustedFileError, read_untrusted

__all__ = [
    "FORMAT",
    "IDENTIFIER",
    "JOB_OUTPUTS",
    "MAX_NODES",
    "MAX_PROGRAM_BYTES",
    "ONNX_FILE",
    "PROGRAM_FILE",
    "RESULT_FILE",
    "SAFETENSORS_FILE",
    "TARGET_FILE",
    "TENSORS_FILE",
    "TORCHSCRIPT_FILE",
    "TRAIN_STATE_FILE",
    "VALIDATED_FILES",
    "VERSION",
    "ProgramError",
    "check_program",
    "read_program",
    "read_regular_file",
]

PROGRAM_FILE = "program.json"
TENSORS_FILE = "program.safetensors"
#: A paused training's state (``stop_after``), handed back by the host to the job resuming it.
TRAIN_STATE_FILE = "train-state.pt"
#: The candidate's validated (untrained) program, handed to its training job under these names
#: (by the names it has on the host), so the job can fill the same graph with trained tensors
#: instead of exporting again. Not the names a job writes its own program under.
VALIDATED_FILES = {"validated.json": PROGRAM_FILE, "validated.safetensors": TENSORS_FILE}
#: What ``export`` writes; the host copies only these names.
SAFETENSORS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
#: The deployment target's model file the ``target`` job builds.
TARGET_FILE = "target.onnx"
#: The runner's answer, which every job writes.
RESULT_FILE = "result.json"
#: Every file a job of each tool may leave for the host, and nothing else reaches the host's disk:
#: each is a file the host creates and lends to the job (``archsmith.sandbox.base.work_files``);
#: everything else the job writes goes to a size-limited tmpfs that ends with it.
JOB_OUTPUTS: dict[str, tuple[str, ...]] = {
    "build": (RESULT_FILE, PROGRAM_FILE, TENSORS_FILE),
    "train": (RESULT_FILE, PROGRAM_FILE, TENSORS_FILE, TRAIN_STATE_FILE),
    "export": (RESULT_FILE, SAFETENSORS_FILE, ONNX_FILE, TORCHSCRIPT_FILE),
    # the deployment target's model file, built from the checked program (``target_ops``)
    "target": (RESULT_FILE, TARGET_FILE),
}
FORMAT = "archsmith-program"
VERSION = 1
#: A program.json larger than this is not one an honest export writes; it is refused unread.
MAX_PROGRAM_BYTES = 32 << 20
MAX_NODES = 200_000
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TENSOR_KINDS = ("parameter", "buffer", "constant")


class ProgramError(Exception):
    """A model that cannot be exported as a program, or a file that is not a valid program."""


def read_regular_file(path: Path, limit: int) -> bytes:
    """``files.read_untrusted``, failing with a ProgramError that goes back to the code fixer."""
    try:
        return read_untrusted(path, limit)
    except UntrustedFileError as e:
        raise ProgramError(str(e)) from e


def read_program(directory: Path) -> tuple[bytes, dict[str, Any]]:
    """``program.json`` in ``directory``: its bytes and, checked, its data."""
    raw = read_regular_file(directory / PROGRAM_FILE, MAX_PROGRAM_BYTES)
    try:
        return raw, check_program(json.loads(raw.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ProgramError(f"program.json is not valid JSON: {e}") from e


def check_program(data: Any) -> dict[str, Any]:
    """``data`` (parsed program.json) if its header, tensor table and aliases are well formed."""
    if not isinstance(data, dict):
        raise ProgramError("program.json is not a JSON object")
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ProgramError(
            f"program.json is not an {FORMAT} version {VERSION} file"
            f" (format {str(data.get('format'))[:40]!r}, version {str(data.get('version'))[:10]})"
        )
    for key, kind in (("input", dict), ("tensors", dict), ("nodes", list)):
        if not isinstance(data.get(key), kind):
            raise ProgramError(f"program.json has no {key} {kind.__name__}")
    if len(data["nodes"]) > MAX_NODES:
        raise ProgramError(f"program.json has {len(data['nodes'])} nodes, more than {MAX_NODES}")
    for name, kind in data["tensors"].items():
        if kind not in TENSOR_KINDS:
            raise ProgramError(f"tensor {name[:80]!r} has an unknown kind {str(kind)[:20]!r}")
    aliases = data.setdefault("aliases", {})
    if not isinstance(aliases, dict) or not all(
        isinstance(v, str) and v in data["tensors"] for v in aliases.values()
    ):
        raise ProgramError("program.json's aliases must name tensors the program holds")
    return data
