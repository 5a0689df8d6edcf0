"""`benchmarks/gpu_check.sh`: runs end to end on a CPU (CUDA steps skipped), one failing step does not
stop the others, and skipped CUDA tests count as failures when CUDA is present."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu_and_reports_every_step(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    env |= {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["mode"] == "quick" and report["passed"]
    assert [(s["step"], s["status"]) for s in report["steps"]] == [
        (1, "pass"), (2, "skipped"), (3, "skipped"), (4, "pass"), (5, "pass"), (6, "pass"),
    ]  # fmt: skip
    assert "no CUDA device" in report["steps"][1]["summary"]
    assert report["steps"][3]["data"]["quick"]["speedup_vs_plain"] > 0
    assert "from the step-5 checkpoint" in report["steps"][5]["summary"]
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| 5. pretraining fit + resume | pass |" in markdown
    assert "pretraining resume" in (tmp_path / "gpu_check.log").read_text()


def test_a_failing_step_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    def fails(check):
        raise gpu_check.StepFailed("check failed", "the tail of its output")

    def crashes(check):
        return {}["missing"]  # a bug in a step is reported as its failure

    def passes(check):
        return "fine", {"value": 1}

    monkeypatch.setattr(gpu_check, "STEPS", [("first", fails), ("second", crashes), ("third", passes)])
    assert gpu_check.main(["--out", str(tmp_path)]) == 1
    steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert [s["status"] for s in steps] == ["fail", "fail", "pass"]
    assert steps[0]["error"] == "the tail of its output"
    assert steps[1]["summary"] == "KeyError: 'missing'" and "Traceback" in steps[1]["error"]
    assert steps[2]["data"] == {"value": 1}
    assert "## 1. first: error" in (tmp_path / "gpu_check.md").read_text()
    assert "1 passed, 2 failed, 0 skipped" in capsys.readouterr().out


def fake_check(tmp_path: Path, output: str, monkeypatch) -> gpu_check.Check:
    check = gpu_check.Check(quick=False, cuda=True, work=tmp_path, log=tmp_path / "log", deadline=time.monotonic() + 60)
    monkeypatch.setattr(check, "run", lambda *args: output)
    return check


def test_cuda_tests_fail_on_a_skip_when_cuda_is_present(tmp_path, monkeypatch):
    output = "SKIPPED [1] tests/test_device_loader.py:30: needs a CUDA device\n== 40 passed, 1 skipped in 9.1s =="
    with pytest.raises(gpu_check.StepFailed, match="1 test\\(s\\) skipped with CUDA present"):
        gpu_check.step_cuda_tests(fake_check(tmp_path, output, monkeypatch))


def test_cuda_tests_accept_the_skips_expected_on_a_gpu_machine(tmp_path, monkeypatch):
    output = (
        "SKIPPED [1] tests/test_fast_paths.py:200: checks the message shown when CUDA is missing\n"
        "SKIPPED [3] tests/test_ops.py:316: pytorch3d is not installed\n== 60 passed, 4 skipped in 20.0s =="
    )
    summary, data = gpu_check.step_cuda_tests(fake_check(tmp_path, output, monkeypatch))
    assert summary == "60 passed, 4 skipped (2 expected skips)" and len(data["skips"]) == 2


def test_report_directory_is_out_when_set(monkeypatch, tmp_path):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert gpu_check.output_dir(None) == tmp_path
    monkeypatch.delenv("OUT")
    assert gpu_check.output_dir(None) == ROOT / "artifacts" / "gpu_check"
