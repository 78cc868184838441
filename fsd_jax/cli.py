"""Shared command-line plumbing: logging, quiet third-party output, one-line errors."""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fsd_jax.interrupt import Interrupted, Terminated, terminate_as_interrupt

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
    from fsd_jax.disk_cache import enable_compilation_cache

    enable_compilation_cache()


def config_fields(config: Any) -> str:
    """Every leaf field of ``config`` as ``--config.<field> <value>`` lines, in config order."""
    from flax import traverse_util

    flat = traverse_util.flatten_dict(config.to_dict(), sep=".")
    return "\n".join(f"--config.{k} {v!r}" for k, v in flat.items())


def run_cli(main: Callable[[], int | None], debug: bool = False) -> int:
    """Call ``main``; a user error becomes ``error: <message>`` on stderr and exit status 2.

    SIGINT and SIGTERM end in one line too (``fsd_jax.interrupt``): inside training, after a
    checkpoint of the current step; elsewhere, with the last checkpoint as it was. The exit
    status is 128 + the signal number.
    """
    terminate_as_interrupt()
    try:
        return main() or 0
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt as e:
        signum = signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT
        print(
            f"interrupted by {signum.name}: run the same command again to resume from the last "
            "checkpoint (nothing was being trained)",
            file=sys.stderr,
        )
        return 128 + signum
    except USER_ERRORS as e:
        if debug:
            raise
        msg = str(e) if not isinstance(e, KeyError) else f"missing key {e}"
        print(f"error: {msg}", file=sys.stderr)
        return 2


def check_config_flag(
    argv: list[str],
    flag: str = "config",
    listing: str | None = None,
    default: str | None = None,
) -> list[str]:
    """Exit with ``error: ...`` (status 2) if ``--flag file.py[:arg]`` cannot give a config, or
    if an override ``--flag.a.b`` names no option of it; returns ``argv`` with the space form of
    boolean overrides (``--flag.export False``) joined as ml_collections needs it.

    Loads the file and calls ``get_config`` the way ml_collections will, so that a missing file,
    an argument ``get_config`` rejects (an unknown task or variant) or a misspelt option is
    reported in one line (with the closest option names) instead of a traceback.
    """
    spec = default
    for i, a in enumerate(argv):
        if a.startswith(f"--{flag}="):
            spec = a.split("=", 1)[1]
        elif a == f"--{flag}" and i + 1 < len(argv):
            spec = argv[i + 1]
    if spec is None:
        return argv
    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        extra = ""
        if listing and Path(listing).is_dir():
            names = sorted(p.stem for p in Path(listing).glob("[!_]*.py"))
            extra = f" (configs in {listing}: {', '.join(names)})"
        print(f"error: --{flag} {path}: no such file{extra}", file=sys.stderr)
        sys.exit(2)
    try:
        config = load_config(path, arg or None)
    except USER_ERRORS as e:
        print(f"error: --{flag} {spec}: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        return check_overrides(argv, config, flag, spec)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _options(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every option of ``config`` by dotted name (nested dicts too) with its value."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        out[name] = value
        if hasattr(value, "items") and not isinstance(value, str):
            out.update(_options(value, name + "."))
    return out


def _closest(name: str, options: dict[str, Any]) -> list[str]:
    """Up to four option names near ``name``: same initials (``lr``: ``learning_rate``), close
    spelling, or containing its last part."""
    leaves = [o for o, v in options.items() if not hasattr(v, "items")]
    last = name.rsplit(".", 1)[-1]
    initials = [
        o for o in leaves if "".join(w[:1] for w in o.rsplit(".", 1)[-1].split("_")) == last
    ]
    spelling = difflib.get_close_matches(name, leaves, n=4, cutoff=0.6)
    part = [o for o in leaves if len(last) > 2 and last in o.rsplit(".", 1)[-1]]
    return list(dict.fromkeys(initials + spelling + part))[:4]


_BOOLEAN_WORDS = {"true", "false", "1", "0", "yes", "no"}


def check_overrides(argv: list[str], config: Any, flag: str, spec: str) -> list[str]:
    """``argv`` with ``--flag.x VALUE`` joined to ``--flag.x=VALUE`` for boolean options;
    ``ValueError`` naming the closest options when an override names none."""
    options = _options(config)
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if not a.startswith(f"--{flag}."):
            out.append(a)
            continue
        name = a[len(flag) + 3 :].split("=", 1)[0]
        if name not in options:
            hint = ", ".join(_closest(name, options))
            hint = f"; closest: {hint}" if hint else ""
            raise ValueError(f"--{flag}.{name}: {spec} has no option {name}{hint}")
        boolean = isinstance(options[name], bool)
        if boolean and "=" not in a and i < len(argv) and argv[i].lower() in _BOOLEAN_WORDS:
            out.append(f"{a}={argv[i]}")
            i += 1
            continue
        out.append(a)
    return out


def load_config(path: str | Path, arg: str | None = None) -> Any:
    """``get_config(arg)`` of a config file, loaded by path as ``--config file.py:arg`` loads it.

    The grid builds its runs' configs this way from ``grid.configs_dir``, so the library never
    imports the ``configs`` directory as a package.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    name = "_fsd_jax_config_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"{path}: not a Python config file")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(*([arg] if arg else []))
