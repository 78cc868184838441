"""The on-disk compilation cache the command-line tools turn on."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _probe(env: dict) -> str:
    code = textwrap.dedent(
        """
        import jax
        from fsd_jax.disk_cache import enable_compilation_cache
        print(enable_compilation_cache(), jax.config.jax_compilation_cache_dir)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_compilation_cache_location_and_switch(tmp_path, monkeypatch):
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "FSD_JAX_"))}
    root = tmp_path / "root"
    assert _probe({**base, "FSD_JAX_CACHE": str(root)}) == f"{root / 'xla'} {root / 'xla'}"
    assert (root / "xla").is_dir()
    own = tmp_path / "own"
    env = {**base, "FSD_JAX_CACHE": str(root), "FSD_JAX_COMPILE_CACHE": str(own)}
    assert _probe(env) == f"{own} {own}"
    assert _probe({**env, "FSD_JAX_COMPILE_CACHE": "off"}) == "None None"
    # JAX's own setting wins and is left alone
    jaxdir = tmp_path / "jaxdir"
    assert _probe({**env, "JAX_COMPILATION_CACHE_DIR": str(jaxdir)}) == f"{jaxdir} {jaxdir}"


def test_a_cached_program_gives_the_same_result(tmp_path):
    """The second process loads the first one's compiled program instead of compiling."""
    import os

    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np
        from fsd_jax.disk_cache import enable_compilation_cache
        hits = []
        jax.monitoring.register_event_listener(
            lambda event, **kw: hits.append(event) if event.endswith("cache_hits") else None
        )
        enable_compilation_cache(min_compile_seconds=0.0)
        f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(0))
        x = np.arange(64 * 32, dtype=np.float32).reshape(64, 32) / 1000
        print(len(hits), np.asarray(f(x)).tobytes().hex(), len(hits))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "FSD_JAX_"))}
    env["FSD_JAX_COMPILE_CACHE"] = str(tmp_path / "xla")
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    (before0, out0, after0), (before1, out1, after1) = (r.split() for r in runs)
    assert (before0, after0, before1) == ("0", "0", "0") and int(after1) >= 1
    assert out0 == out1
    assert any(p.name.endswith("-cache") for p in (tmp_path / "xla").iterdir())
