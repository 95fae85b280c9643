"""Deployment targets: where a model's speed, size and accuracy are measured.

A target is a runtime (``torch``, today's figure; ``onnxruntime``; ``openvino``) with options:
``threads`` (the runtime's intra-op threads; default: every core the measuring job has), ``batch``
(the throughput batch; latency is always batch 1), ``precision`` (``fp32``, or ``int8``:
post-training static quantisation calibrated on training samples by the runtime's own quantiser)
and ``device`` (the URL of a measuring agent on the deployment device, ``archsmith.device_agent``:
the model file is timed there; its token is ``ARCHSMITH_DEVICE_TOKEN``, never stored).
It is written ``RUNTIME[:key=value,...]``, e.g. ``onnxruntime:threads=1,precision=int8``.

This module only parses and describes targets (``archsmith targets``); the measuring process builds
the target's model file from the checked program and times it (``scoring.target_ops``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from typing import Literal

from archsmith.errors import InputError

__all__ = [
    "DEFAULT_TARGET_BATCH",
    "RUNTIMES",
    "RuntimeInfo",
    "Target",
    "installed_version",
    "parse_target",
    "target_from_request",
]

Precision = Literal["fp32", "int8"]
#: The throughput batch when the target names none (latency is batch 1 regardless).
DEFAULT_TARGET_BATCH = 32
_MAX_THREADS = 1024
_MAX_BATCH = 65_536


@dataclass(frozen=True)
class RuntimeInfo:
    """What a runtime needs and can do, as ``archsmith targets`` lists it."""

    name: str
    #: The import name whose presence makes the runtime measurable here.
    module: str
    #: The distribution that provides it (its version is printed).
    package: str
    #: The precisions archsmith can build for it.
    precisions: tuple[Precision, ...]
    #: The model file the target's figures are measured on.
    artifact: str
    needs: str


RUNTIMES: dict[str, RuntimeInfo] = {
    info.name: info
    for info in (
        RuntimeInfo(
            "torch", "torch", "torch", ("fp32",), "the checked program (torch.fx)",
            "nothing more: archsmith's own figure, the default",
        ),
        RuntimeInfo(
            "onnxruntime", "onnxruntime", "onnxruntime", ("fp32", "int8"), "model.onnx",
            "onnxruntime (an archsmith dependency); int8 with onnxruntime.quantization",
        ),
        RuntimeInfo(
            "openvino", "openvino", "openvino", ("fp32",), "model.onnx (read by OpenVINO)",
            "pip install 'archsmith[targets]' (openvino); int8 would need NNCF, not wired",
        ),
    )
}  # fmt: skip


def installed_version(info: RuntimeInfo) -> str | None:
    """The runtime's installed version, or None when it cannot be imported here."""
    if importlib.util.find_spec(info.module) is None:
        return None
    try:
        return importlib.metadata.version(info.package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


@dataclass(frozen=True)
class Target:
    """One deployment target; ``str(target)`` is its canonical spelling."""

    runtime: str = "torch"
    threads: int | None = None
    batch: int = DEFAULT_TARGET_BATCH
    precision: Precision = "fp32"
    #: A remote device's measuring agent (``archsmith device-agent``), or None: this machine.
    device: str | None = None

    def __str__(self) -> str:
        opts = [f"threads={self.threads}"] if self.threads is not None else []
        opts.append(f"batch={self.batch}")
        opts.append(f"precision={self.precision}")
        if self.device is not None:
            opts.append(f"device={self.device}")
        return f"{self.runtime}:{','.join(opts)}"

    @property
    def is_host_torch(self) -> bool:
        """The default: archsmith's own torch figures, no artifact to build."""
        return self.runtime == "torch"


def _positive(key: str, value: str, most: int, text: str) -> int:
    try:
        number = int(value)
    except ValueError as e:
        raise InputError(
            f"target {text!r}: {key}={value!r} is not a whole number; write e.g. {key}=2"
        ) from e
    if not 1 <= number <= most:
        raise InputError(f"target {text!r}: {key} must be between 1 and {most}, not {number}")
    return number


def parse_target(text: str) -> Target:
    """``RUNTIME[:key=value,...]`` as a Target; InputError names what is wrong and what is known."""
    raw = text.strip()
    name, _, rest = raw.partition(":")
    name = name.strip().lower()
    info = RUNTIMES.get(name)
    if info is None:
        raise InputError(
            f"unknown target runtime {name!r} in {text!r}; known: {', '.join(RUNTIMES)}"
            " (`archsmith targets` lists them and what each needs)"
        )
    threads: int | None = None
    batch = DEFAULT_TARGET_BATCH
    precision: Precision = "fp32"
    device: str | None = None
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not value:
            raise InputError(f"target {text!r}: {part!r} is not key=value (e.g. threads=1)")
        if key == "threads":
            threads = _positive(key, value, _MAX_THREADS, text)
        elif key == "batch":
            batch = _positive(key, value, _MAX_BATCH, text)
        elif key == "precision":
            if value not in ("fp32", "int8"):
                raise InputError(f"target {text!r}: precision must be fp32 or int8, not {value!r}")
            precision = "int8" if value == "int8" else "fp32"
        elif key == "device":
            if not value.startswith(("http://", "https://")) or "," in value:
                raise InputError(
                    f"target {text!r}: device must be the agent's http:// or https:// URL,"
                    f" not {value!r}"
                )
            device = value
        else:
            raise InputError(
                f"target {text!r}: unknown option {key!r}; options: threads, batch, precision,"
                " device"
            )
    if precision not in info.precisions:
        raise InputError(
            f"target {text!r}: {name} measures {', '.join(info.precisions)} here, not {precision}"
        )
    if device is not None and name == "torch":
        raise InputError(
            f"target {text!r}: a device measures an ONNX file; use onnxruntime or openvino there"
        )
    return Target(name, threads, batch, precision, device)


_NUMBER_WORDS = {"one": 1, "single": 1, "two": 2, "dual": 2, "three": 3, "four": 4, "quad": 4}
_RUNTIME_WORDS = (
    (re.compile(r"\bonnx\s*-?\s*runtime\b|\bort\b", re.I), "onnxruntime"),
    (re.compile(r"\bopen\s*vino\b", re.I), "openvino"),
)
_INT8 = re.compile(r"\bint-?8\b|\b8-?bit\b|\bquanti[sz]ed\b|\bquanti[sz]ation\b", re.I)
_THREADS = re.compile(
    r"\b(?:on\s+)?(\d+|one|single|two|dual|three|four|quad)[\s-]*(?:threads?|threaded|cores?)\b",
    re.I,
)


def target_from_request(request: str) -> tuple[str | None, str | None]:
    """A target named in a request in plain words, and the note saying what was read.

    "with onnxruntime on one thread", "int8", "for a 4-core ARM board": a runtime named, an int8
    precision, a thread or core count. A count or int8 without a runtime means onnxruntime (a
    deployment runtime that does both here). Nothing of the kind: (None, None).
    """
    runtime = next((name for pattern, name in _RUNTIME_WORDS if pattern.search(request)), None)
    int8 = _INT8.search(request)
    threads = _THREADS.search(request)
    if runtime is None and int8 is None and threads is None:
        return None, None
    opts: list[str] = []
    read: list[str] = [runtime] if runtime else []
    if threads is not None:
        word = threads.group(1).lower()
        count = int(word) if word.isdigit() else _NUMBER_WORDS[word]
        opts.append(f"threads={count}")
        read.append(f"{threads.group(0).strip()!r}")
    if int8 is not None:
        opts.append("precision=int8")
        read.append(f"{int8.group(0)!r}")
    name = runtime or "onnxruntime"
    text = f"{name}:{','.join(opts)}" if opts else name
    target = parse_target(text)
    why = (
        f"deployment target {target} from the request ({', '.join(read)})"
        + ("" if runtime else "; onnxruntime, since the request names no runtime")
        + "; --target replaces it"
    )
    return str(target), why
