"""The multi-process path as a cluster job runs it, on this one machine: two processes with a
localhost coordinator and gloo CPU collectives, 4 host devices each, each feeding its own rows of
every global batch. They train exactly what one process on 8 devices trains; Ctrl-C or SIGTERM on
either stops both at the same step with a checkpoint; a process killed outright (SIGKILL, then the
rest of the job) resumes from the last checkpoint when both start again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
from conftest import finetune_command
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[1]
STEPS = 48


def _env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    flags = os.environ.get("XLA_FLAGS", "")  # keeps conftest's compile level
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _cmd(checkpoint: Path, workdir: Path, cache: Path) -> list[str]:
    return finetune_command(checkpoint, workdir, cache, STEPS, every=4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class Job:
    """Both processes of one launch; stderr of each in a file (gloo is chatty)."""

    def __init__(self, cmd: list[str], logs: Path):
        port = _free_port()
        self.logs = [logs.with_name(f"{logs.name}.{i}.err") for i in range(2)]
        self.procs = [
            subprocess.Popen(
                [
                    *cmd,
                    "--config.multihost=True",
                    f"--coordinator_address=localhost:{port}",
                    "--num_processes=2",
                    f"--process_id={i}",
                ],
                cwd=ROOT,
                env=_env(4),
                stdout=subprocess.DEVNULL,
                stderr=open(self.logs[i], "w"),  # noqa: SIM115
            )
            for i in range(2)
        ]

    def wait(self, timeout: float = 300) -> tuple[list[int], list[str]]:
        codes = [p.wait(timeout=timeout) for p in self.procs]
        return codes, [
            "\n".join(x for x in log.read_text().splitlines() if not x.startswith("[Gloo]"))
            for log in self.logs
        ]

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(timeout=60)


def _checkpoint_steps(workdir: Path) -> list[int]:
    d = workdir / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.is_dir() else []


def _wait_for_checkpoint(job: Job, workdir: Path, at_least: int) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and all(p.poll() is None for p in job.procs):
        if any(s >= at_least for s in _checkpoint_steps(workdir)):
            return
        time.sleep(0.05)
    job.kill()
    raise AssertionError(f"no checkpoint >= {at_least} before the job ended")


def _last_per_step(workdir: Path) -> dict[int, dict]:
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k != "time"} for r in rows}


def test_two_processes_train_as_one_and_stop_and_resume_together(tiny_checkpoint, tmp_path) -> None:
    cache = tmp_path / "cache"
    one = tmp_path / "one"
    res = subprocess.run(
        _cmd(tiny_checkpoint, one, cache), cwd=ROOT, env=_env(8), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]

    work = tmp_path / "two"
    cmd = _cmd(tiny_checkpoint, work, cache)
    stopped = 0
    resumed_at = []  # steps a launch started from
    # Ctrl-C on process 0, then SIGTERM (preemption) on process 1: both stop at one step
    for who, signum, expected in ((0, signal.SIGINT, (130, 143)), (1, signal.SIGTERM, (143, 143))):
        job = Job(cmd, tmp_path / f"stop-{signum}")
        _wait_for_checkpoint(job, work, stopped + 8)
        job.procs[who].send_signal(signum)
        codes, errs = job.wait()
        assert tuple(codes) == expected, errs
        lasts = [e.strip().splitlines()[-1] for e in errs]
        steps = set()
        for i, last in enumerate(lasts):
            name = signal.Signals(expected[i] - 128).name
            assert last.startswith(f"interrupted by {name} at step "), last
            assert "run the same command again to resume" in last
            steps.add(int(last.split(" at step ")[1].split(":")[0]))
        assert "Traceback" not in errs[0] + errs[1]
        assert len(steps) == 1, lasts  # the same step on both
        stopped = steps.pop()
        assert stopped in _checkpoint_steps(work) and stopped < STEPS
        assert not (work / "results.json").exists()
        resumed_at.append(stopped)

    # one process dies (SIGKILL); the scheduler then stops the rest of the job
    job = Job(cmd, tmp_path / "kill")
    _wait_for_checkpoint(job, work, stopped + 8)
    job.procs[1].kill()
    job.kill()
    killed_after = max(_checkpoint_steps(work))
    assert killed_after < STEPS, "the run ended before it could be killed"
    resumed_at.append(killed_after)

    codes, errs = Job(cmd, tmp_path / "resume").wait()
    assert codes == [0, 0], errs
    results = json.loads((work / "results.json").read_text())
    assert results["steps"] == STEPS and results["steps_this_run"] == STEPS - killed_after

    # what one process on 8 devices computes, up to the order of the cross-process sums
    a = load_file(str(one / "export" / "model.safetensors"))
    b = load_file(str(work / "export" / "model.safetensors"))
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=k)
    ref, got = _last_per_step(one), _last_per_step(work)
    assert sorted(got) == sorted(ref)
    for step, row in ref.items():
        if any(step - 4 < r < step for r in resumed_at):
            continue  # a log window cut by a resume averages fewer steps
        for k, v in row.items():
            np.testing.assert_allclose(got[step][k], v, rtol=1e-5, atol=1e-6, err_msg=f"{step} {k}")
    assert json.loads((one / "results.json").read_text())["dev"] == results["dev"]

    # the same launch on the finished workdir: both say so and exit 0
    codes, errs = Job(cmd, tmp_path / "again").wait()
    assert codes == [0, 0], errs
    assert all("is finished" in e for e in errs), errs
