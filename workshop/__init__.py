"""Teaching modules: data, the training engine, one trainer and one notebook per module."""

import os


def profile() -> str:
    """'smoke' when WORKSHOP_PROFILE=smoke (tests, CI), else 'full'."""
    return "smoke" if os.environ.get("WORKSHOP_PROFILE") == "smoke" else "full"
