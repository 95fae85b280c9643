"""The host's side of the handover: a program leaves the candidate's work directory only checked.

After a candidate job, the host reads ``program.json`` and ``program.safetensors`` from the job's
work directory (written by candidate code, so hostile) with ``files.open_untrusted``: no link is
followed, only regular files of bounded size are read. It checks the program's structure and the
safetensors header (every tensor's dtype, shape and byte range, the ranges tiling the file exactly,
the names those of the program) and copies the bytes it checked into a new directory of its own,
which no job can write. Measuring jobs get copies of those files, never a path the candidate chose.

The parameter count and size come from the header here, in the host, with no torch and no code of
the candidate's: they are the figures the user's limits are checked against, so they count every
number the program carries (parameters, buffers and constants alike).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from archsmith.files import UntrustedFileError, atomic_write_bytes, open_untrusted
from archsmith.scoring.format import PROGRAM_FILE, TENSORS_FILE, ProgramError, read_program

__all__ = [
    "MODEL_FILES",
    "ProgramFiles",
    "graph_difference",
    "model_files",
    "read_safetensors_header",
    "take_program",
]

#: The files of a model as the host keeps it, and as measuring jobs receive them.
MODEL_FILES = (PROGRAM_FILE, TENSORS_FILE)
#: Bytes per element of the safetensors dtypes a program may hold.
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip
_MAX_HEADER_BYTES = 100 << 20


@dataclass(frozen=True)
class ProgramFiles:
    """A checked program in a host-only directory, with what its header says."""

    directory: Path
    params: int
    size_bytes: int
    nodes: int
    tensors: int

    @property
    def paths(self) -> dict[str, Path]:
        """The files by name, as ``SandboxJob.input_files`` wants them."""
        return model_files(self.directory)


def model_files(directory: Path) -> dict[str, Path]:
    """The model files in a host directory, by the names a measuring job reads."""
    return {name: directory / name for name in MODEL_FILES}


def read_safetensors_header(f: BinaryIO, size: int) -> dict[str, tuple[str, list[int]]]:
    """Each tensor's dtype and shape, after checking that the header describes the file exactly.

    The format: an 8-byte little-endian header length, a JSON header mapping each name to its
    dtype, shape and byte range (``data_offsets``, relative to the data after the header), then the
    data. Every range must have the size its dtype and shape give, and the ranges must cover the
    data without gap or overlap.
    """
    if size < 8:
        raise ProgramError("program.safetensors is shorter than its header")
    f.seek(0)
    (length,) = struct.unpack("<Q", f.read(8))
    if length > min(_MAX_HEADER_BYTES, size - 8):
        raise ProgramError("program.safetensors' header length is larger than the file")
    try:
        header = json.loads(f.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ProgramError(f"program.safetensors' header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise ProgramError("program.safetensors' header is not a JSON object")
    header.pop("__metadata__", None)
    out: dict[str, tuple[str, list[int]]] = {}
    ranges: list[tuple[int, int]] = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ProgramError(f"tensor {name[:80]!r} in program.safetensors is malformed")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_BYTES:
            raise ProgramError(f"tensor {name[:80]!r} has an unsupported dtype {str(dtype)[:20]}")
        ints = (*shape, *offsets) if isinstance(shape, list) and isinstance(offsets, list) else ()
        if (
            not ints
            or len(offsets) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints)
        ):
            raise ProgramError(f"tensor {name[:80]!r} has a malformed shape or byte range")
        begin, end = offsets
        if end - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise ProgramError(f"tensor {name[:80]!r}'s byte range does not fit its shape")
        ranges.append((begin, end))
        out[name] = (dtype, shape)
    position = 0
    for begin, end in sorted(ranges):
        if begin != position:
            raise ProgramError("program.safetensors' tensors overlap or leave gaps")
        position = end
    if position != size - 8 - length:
        raise ProgramError("program.safetensors' tensors do not fill the file exactly")
    return out


def _copy(src: BinaryIO, dest: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            src.seek(0)
            while block := src.read(1 << 20):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def take_program(work_dir: Path, models_dir: Path, *, max_tensor_bytes: int) -> ProgramFiles:
    """Check the program a candidate job left in ``work_dir`` and copy it into ``models_dir``.

    Returns where it now is (a new directory of its own) and its parameter count and size. Raises
    ProgramError, saying what is wrong, for a missing, planted, oversized or malformed file.
    """
    raw, program = read_program(work_dir)
    kinds: dict[str, Any] = program["tensors"]
    try:
        tensors = open_untrusted(work_dir / TENSORS_FILE, max_tensor_bytes)
    except UntrustedFileError as e:
        raise ProgramError(f"the job left no program weights: {e}") from e
    with tensors:
        header = read_safetensors_header(tensors, os.fstat(tensors.fileno()).st_size)
        if set(header) != set(kinds):
            raise ProgramError("program.safetensors does not hold exactly the program's tensors")
        # Every number counts, parameter, buffer or constant, whatever its dtype: a weight kept
        # as a buffer or a plain tensor attribute is a weight (``load_program`` sums the same).
        params = sum(math.prod(shape) for _, shape in header.values())
        size = sum(math.prod(shape) * _DTYPE_BYTES[dtype] for dtype, shape in header.values())
        dest = models_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        dest.mkdir(parents=True)
        _copy(tensors, dest / TENSORS_FILE)
    atomic_write_bytes(dest / PROGRAM_FILE, raw)
    return ProgramFiles(dest, params, size, len(program["nodes"]), len(kinds))


def graph_difference(program: Path, reference: Path) -> str | None:
    """Why the program in directory ``program`` does not compute ``reference``'s graph, or None
    when it does.

    The same graph means the same ``program.json`` node for node (operators, arguments, tensor
    names and kinds), every tensor of the same dtype and shape, and the constants the same bytes:
    only parameters and buffers may differ, as training changes them. What was validated (shapes,
    FLOPs), what was timed at an early-stopping check and what is finally scored are then one
    computation. Both programs are host copies ``take_program`` checked.
    """
    ours, theirs = (_described(d) for d in (program, reference))
    if ours[0] != theirs[0]:
        return "its operators, their arguments or its tensors' names differ"
    if ours[1] != theirs[1]:
        changed = sorted(n for n in ours[1] if ours[1][n] != theirs[1].get(n))[:3]
        return f"its tensors' dtypes or shapes differ ({', '.join(n[:60] for n in changed)})"
    if ours[2] != theirs[2]:
        return "the constants in its graph differ"
    return None


def _described(directory: Path) -> tuple[Any, dict[str, tuple[str, list[int]]], str]:
    """A checked program's JSON, its tensors' dtypes and shapes, and a digest of its constants."""
    program = json.loads((directory / PROGRAM_FILE).read_bytes())
    constants = sorted(n for n, kind in program["tensors"].items() if kind == "constant")
    digest = hashlib.sha256()
    with (directory / TENSORS_FILE).open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = read_safetensors_header(f, size)
        f.seek(0)
        (length,) = struct.unpack("<Q", f.read(8))
        offsets = json.loads(f.read(length))
        for name in constants:
            begin, end = offsets[name]["data_offsets"]
            f.seek(8 + length + begin)
            digest.update(name.encode() + b"\0")
            left = end - begin
            while left > 0 and (block := f.read(min(left, 1 << 20))):
                digest.update(block)
                left -= len(block)
    return program, header, digest.hexdigest()
