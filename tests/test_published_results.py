"""The published results page is what its documented command makes from the committed records.

`docs/results.md` promises that the command it quotes rebuilds it from `docs/results_records/`
with nothing trained; this runs that very command (only the workdir and report directory moved
to a temporary folder) and compares the page and its CSV with the committed ones, so that a
hand edit of the page, a changed record or a change in the report code that was not followed by
regenerating the page fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _documented_command() -> list[str]:
    text = (DOCS / "results_preamble.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [b for b in blocks if "--config.grid.max_hours 1e-9" in b]
    assert len(commands) == 1, "expected one report-only grid command in docs/results_preamble.md"
    return shlex.split(commands[0].replace("\\\n", " "))


def _set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    assert flag in argv, f"the documented command has no {flag}"
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def test_results_page_is_rebuilt_from_its_records(tmp_path):
    argv = _documented_command()
    assert argv[:2] == ["python", "train.py"]
    argv = _set_flag(argv, "--workdir", str(tmp_path / "workdir"))
    argv = _set_flag(argv, "--config.grid.report_dir", str(tmp_path / "report"))
    run = subprocess.run(
        [sys.executable, *argv[1:], "--config.progress=False"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = tmp_path / "report"
    for name in ("results.md", "results.csv"):
        assert (report / name).read_text() == (DOCS / name).read_text(), (
            f"docs/{name} differs from what its records give: regenerate it with the command in "
            "docs/results_preamble.md"
        )
    # Plots: their bytes depend on the matplotlib build, so only their presence is checked.
    for png in ["results.png", *(p.name for p in DOCS.glob("cka_*.png"))]:
        assert (report / png).stat().st_size > 0
    # Nothing was trained: a report-only run leaves no checkpoints in its workdir.
    assert not list((tmp_path / "workdir").rglob("*.safetensors"))
