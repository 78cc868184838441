"""One sharded step for every scale: 1 and 8 simulated CPU devices give the same losses and
parameters, with batch-level losses (FSD local, RKD, memory, EMD) over the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, *meshes: str) -> list[dict]:
    env = dict(os.environ)
    flags = os.environ.get("XLA_FLAGS", "")  # keeps conftest's compile level
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    res = subprocess.run(
        [sys.executable, "tests/helpers/sharded_step.py", str(tmp_path), *meshes],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = []
    for mesh in meshes:
        data = np.load(tmp_path / f"{mesh}.npz")
        out.append({k: data[k] for k in data.files})
    return out


def test_one_and_eight_devices_give_the_same_step(tmp_path):
    # one device; 8-way data parallel; 4-way data x 2-way parameter sharding
    one, eight, parallel = _run(tmp_path, "1x1", "8x1", "4x2")
    assert int(one["devices"]) == 1 and int(eight["devices"]) == int(parallel["devices"]) == 8
    keys = sorted(k for k in one if k != "devices")
    assert keys == sorted(k for k in eight if k != "devices")
    assert any(k.startswith("step1/fsd_g") for k in keys)
    for other in (eight, parallel):
        for k in keys:
            if k.startswith("step"):
                np.testing.assert_allclose(other[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
            else:
                np.testing.assert_allclose(other[k], one[k], atol=1e-5, err_msg=k)
    # the EMD layer weights moved from their uniform start (state carried through the step)
    assert not np.allclose(one["aux/emd/att_teacher"], 0.25)


def test_mesh_and_batch_size_errors():
    import types

    import jax

    from fsd_jax.train.sharding import Sharder

    n = len(jax.devices())
    with pytest.raises(ValueError, match=f"mesh.model={n + 1}: must be >= 1 and divide"):
        Sharder.create(model=n + 1)
    with pytest.raises(ValueError, match=f"mesh.data={n + 1} x mesh.model=1 != {n} devices"):
        Sharder.create(data=n + 1)
    fake = Sharder(mesh=types.SimpleNamespace(shape={"data": 8, "model": 1}))
    fake.check_batch_size(32)
    with pytest.raises(ValueError, match=r"train.batch_size=20: must be a multiple .* \(8 devices"):
        fake.check_batch_size(20)
