"""``python -m jobs.dev [dagster dev options]``: the UI on the persistent local instance.

Sets ``DAGSTER_HOME`` to ``<CALLIPER_HOME>/dagster`` (creating it with the pool settings of
:func:`jobs.run_city.ensure_dagster_home`), so the runs of ``python -m jobs.run_city`` (``make
run``) appear in the UI's history, then replaces this process with ``dagster dev -w
workspace.yaml``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from calliper_pipeline import settings
from jobs.run_city import ensure_dagster_home


def main(argv: list[str] | None = None) -> None:
    s = settings.from_env()
    os.environ["DAGSTER_HOME"] = str(ensure_dagster_home(s.dagster_home))
    dagster = Path(sys.executable).parent / "dagster"
    workspace = settings.REPO_ROOT / "workspace.yaml"
    args = [str(dagster), "dev", "-w", str(workspace), *(sys.argv[1:] if argv is None else argv)]
    os.execv(args[0], args)


if __name__ == "__main__":
    main()
