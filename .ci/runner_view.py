"""Print, NUL-separated, the Python files and directories a sandboxed job imports from: the
entries of the sandbox's view of site-packages (`archsmith.sandbox.pyview`) and archsmith itself.

CI byte-compiles these and only these before the tests: a job sees them read-only and would
compile every module it imports again, in memory, in every job. The rest of the environment is
compiled by the test processes themselves, once, as they first import it (they may write there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import archsmith
from archsmith.sandbox.pyview import python_view


def main() -> int:
    view = python_view()
    paths = [Path(e) for e in view.entries] + [Path(archsmith.__file__).resolve().parent]
    wanted = [p for p in paths if p.is_dir() or p.suffix == ".py"]
    if not wanted:
        sys.stderr.write("the sandbox's Python view is empty: nothing to byte-compile\n")
        return 1
    sys.stdout.write("".join(f"{p}\0" for p in wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
