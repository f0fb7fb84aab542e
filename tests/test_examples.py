"""The examples run as documented (a real process, the built-in corpus)."""

import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


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
