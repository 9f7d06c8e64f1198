"""Not an app: what the slow-click apps (slow_click_app.py, panel_slow_click_app.py) block on.

A click's callback waits until the file named by SLOW_CLICK_RELEASE exists (the test creates it): a slow
database query, without a clock in the test.
"""

import os
import time
from pathlib import Path

RELEASE = Path(os.environ["SLOW_CLICK_RELEASE"])


def wait_for_release(limit: float = 60) -> None:
    """Block this thread until the test releases it, at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
