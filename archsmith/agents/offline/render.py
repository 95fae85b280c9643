"""The offline architect's description as candidate code: readable, self-contained, torch only.

The code is a Jinja template beside the prompts (``offline_image_code.j2``,
``offline_text_code.j2``) so it reads as the Python it renders; the description fills in its
constants. The same description always renders to the same bytes (the run's code hashes and the
store's deduplication rely on it).
"""

from __future__ import annotations

from typing import Any

from archsmith.agents.offline.description import Arch, summarize
from archsmith.prompts import render

__all__ = ["render_code"]


def render_code(arch: Arch) -> str:
    """Readable, self-contained candidate code (torch only) for the description."""
    values: dict[str, Any] = {
        "summary": summarize(arch),
        "stages": arch.stages,
        "head": repr(list(arch.head)),
        "dropout": repr(float(arch.dropout)),
        "stage_dropout": repr(float(arch.stage_dropout)),
        "kaiming": repr(arch.init == "kaiming"),
    }
    if arch.kind == "text":
        return render(
            "offline_text_code", vocab_size=arch.vocab_size, embed_dim=arch.embed_dim, **values
        )
    return render("offline_image_code", stem_stride=arch.stem_stride, **values)
