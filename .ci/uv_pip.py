"""Run ``uv pip`` with the package sources this machine's pip is configured with.

uv reads no pip configuration, and a machine says where its packages come from there: an index,
extra indexes, local wheel directories, a constraint file of its own (``pip config list`` shows
them, from the configuration files and the ``PIP_*`` variables). This reads them at run time, so
that no source is written into the repository, and runs uv with the same ones:

    python3 .ci/uv_pip.py UV install --python .venv/bin/python -c constraints.txt -e '.[dev]'

uv looks for each package in every index and takes the best version, as pip does
(``--index-strategy unsafe-best-match``; uv's own default stops at the first index that has the
package at all, which a local index holding one release of a package would then decide).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

#: pip's precedence, lowest first: a configuration file's [global], its [install], then PIP_*.
_RANK = {"global": 0, "install": 1, ":env:": 2}
#: pip's settings that name a package source, and uv's option for each value.
_OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}
_TRUE = ("1", "true", "yes", "on")


def pip_settings() -> dict[str, str]:
    """Each setting of ``pip config list``, from the source pip would take it from."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    found: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        name, _, shown = line.partition("=")  # pip prints each value as a Python repr
        section, _, key = name.rpartition(".")
        rank = _RANK.get(section)
        if rank is None or (key in found and found[key][0] > rank):
            continue
        found[key] = (rank, " ".join(str(ast.literal_eval(shown)).split()))
    return {key: value for key, (_, value) in found.items()}


def uv_arguments(settings: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv's options and environment for pip's ``settings``."""
    args = ["--index-strategy", "unsafe-best-match"]
    for key, option in _OPTIONS.items():
        for value in settings.get(key, "").split():
            args += [option, value]
    if settings.get("no-index", "").lower() in _TRUE:
        args.append("--no-index")
    env: dict[str, str] = {}
    if settings.get("cert"):
        env["SSL_CERT_FILE"] = settings["cert"]
    if settings.get("timeout") or settings.get("default-timeout"):
        env["UV_HTTP_TIMEOUT"] = settings.get("timeout") or settings["default-timeout"]
    return args, env


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.stderr.write(f"usage: {argv[0]} UV COMMAND [ARGS...]  (runs: UV pip COMMAND ...)\n")
        return 2
    uv, command, *rest = argv[1:]
    args, env = uv_arguments(pip_settings())
    return subprocess.run([uv, "pip", command, *args, *rest], env={**os.environ, **env}).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
