"""The examples run as documented (a real process, the built-in corpus)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


# No GPU visible, whatever the machine has.
NO_GPU = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
needs_torch = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "transformers")),
    reason="needs torch and transformers (the integrations extra)",
)


def test_pretraining_data_example_on_the_builtin_corpus() -> None:
    out = run(str(EXAMPLES / "ul2_pretraining_data.py"), "--batch-size", "4")
    assert "'input_ids': (4, 512)" in out and "'labels': (4, 512)" in out
    assert "'input_ids': (4, 2048)" in out and "'cu_seqlens'" in out
    assert "PrefixLM(0.5)" in out  # the plan table


def test_pretraining_data_example_on_a_memmapped_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.npy"
    np.save(path, np.random.default_rng(0).integers(3, 259, 200_000, dtype=np.int32))
    out = run(str(EXAMPLES / "ul2_pretraining_data.py"), "--tokens", str(path), "--batch-size", "2")
    assert "200000 tokens" in out
    assert "'input_ids': (2, 512)" in out


@needs_torch
def test_gpu_train_step_without_a_gpu_says_it_needs_one() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "gpu_train_step.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=NO_GPU,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "needs a CUDA GPU" in done.stderr and "--tiny" in done.stderr


@needs_torch
@pytest.mark.parametrize("model", [[], ["--decoder"]], ids=["t5", "decoder"])
def test_gpu_train_step_tiny_runs_on_the_cpu(model: list[str]) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "gpu_train_step.py"),
            "--tiny",
            "--steps",
            "6",
            "--batch",
            "2",
            *model,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=NO_GPU,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.startswith("device cpu") and "serial:" in done.stdout and "overlapped:" in done.stdout
