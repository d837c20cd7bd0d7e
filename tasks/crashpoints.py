"""Named crash points: ``ASTROLAB_TEST_CRASH_AT=<name>`` kills the process with SIGKILL when it reaches that point.

The ingest marks each window in which an interrupted run leaves work half done (see ``CRASH_POINTS``), so a test
can kill a run exactly there, every time, and check that the rerun recovers. Unset (always, outside such tests),
a crash point is one dictionary lookup. The variable has the test suite's prefix, which the settings ignore.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "ASTROLAB_TEST_CRASH_AT"

CRASH_POINTS = (
    "after-stage",            # a file's parts are staged (and saved in the lake); its catalog load is not committed
    "after-commit",           # a file's rows and lineage ('loaded') are committed; nothing of it is published
    "during-hats-build",      # a new HATS version's partitions are written; its metadata and hats.properties not
    "after-catalog-publish",  # the catalog records the new version (lineage 'published'); the lake's pointer not
    "after-pointer-swap",     # the lake points at the new version; staging and old versions are not cleaned up
    "during-report",          # the run's report is half written (the n(z) plot, not the sky map)
)


def crash_point(name: str) -> None:
    """Die at once, as ``kill -9`` would (no cleanup, no flush), if ``ASTROLAB_TEST_CRASH_AT`` names this point."""
    if os.environ.get(VARIABLE) == name:
        os.write(2, f"astrolab: crash point {name} ({VARIABLE})\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
