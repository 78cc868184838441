"""Shared command-line plumbing: logging, quiet third-party output, one-line errors."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

# Errors a user can fix (bad data, config, paths); anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


def setup() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in (
        "absl",
        "orbax",
        "jax",
        "httpx",
        "urllib3",
        "filelock",
        "huggingface_hub",
        "datasets",
        "transformers",
        "tensorboardX",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_cli(main: Callable[[], int | None], debug: bool = False) -> int:
    """Call ``main``; a user error becomes ``error: <message>`` on stderr and exit status 2."""
    try:
        return main() or 0
    except USER_ERRORS as e:
        if debug:
            raise
        msg = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
        print(f"error: {msg}", file=sys.stderr)
        return 2
