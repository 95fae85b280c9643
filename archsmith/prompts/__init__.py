"""Prompt templates as data files, rendered with Jinja2 ``StrictUndefined``.

Prompts live in ``*.j2`` files next to this module so they can be read and reviewed as text, and
changed without touching code. ``StrictUndefined`` turns a missing value into an error instead of
an empty string, because a prompt that silently lost the task's constraints would still "work".
Files whose name starts with ``_`` are partials, included by the others.
"""

from __future__ import annotations

from importlib import resources

from jinja2 import Environment, FunctionLoader, StrictUndefined

__all__ = ["available", "render"]


def _load(name: str) -> str | None:
    path = resources.files(__name__).joinpath(name)
    return path.read_text(encoding="utf-8") if path.is_file() else None


_ENV = Environment(
    loader=FunctionLoader(_load),
    undefined=StrictUndefined,
    autoescape=False,  # prompts are plain text, not HTML
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def available() -> list[str]:
    """The template names (without ``.j2``) shipped with the package, partials excluded."""
    files = resources.files(__name__).iterdir()
    return sorted(
        f.name.removesuffix(".j2")
        for f in files
        if f.name.endswith(".j2") and not f.name.startswith("_")
    )


def render(name: str, **values: object) -> str:
    """Render template ``name`` (``architect_refine`` or ``architect_refine.j2``) with ``values``.

    Raises ``jinja2.TemplateNotFound`` for an unknown name and ``jinja2.UndefinedError`` when the
    template uses a value that was not given.
    """
    file = name if name.endswith(".j2") else f"{name}.j2"
    return _ENV.get_template(file).render(**values)
