"""The README says what a newcomer can do: every install line works from a checkout (ul2 is on
no package index), and each integration snippet runs after the shared set-up alone, without
names from another snippet. (``test_integration_examples.py`` runs the snippets together.)"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
INTEGRATIONS = README.split("\n## Integrations\n", 1)[1].split("\n## ", 1)[0]
SETUP, *SNIPPETS = re.findall(r"```python\n(.*?)```", INTEGRATIONS, re.S)


def test_pip_install_lines_install_from_a_checkout_or_a_wheel() -> None:
    installs = re.findall(r"pip install ([^`\n]*)", README)
    assert installs
    for args in installs:
        targets = [a.strip("'\"") for a in args.split("#")[0].split() if not a.startswith("-")]
        assert targets, args
        for target in targets:
            # A path: "." (the checkout) or a built wheel, with extras; never a name to look up.
            assert target.startswith((".", "target/wheels/")), f"pip install {args}: {target!r} is not a path"


def bound_and_used(code: str) -> tuple[set[str], set[str]]:
    bound: set[str] = set()
    used: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store) else used).add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
    return bound, used


def test_the_snippets_are_the_setup_and_one_per_integration() -> None:
    assert len(SNIPPETS) == 5  # torch, hf, grain, arrow, ray
    assert "stdlib_stream" in SETUP


@pytest.mark.parametrize("i", range(len(SNIPPETS)))
def test_each_integration_snippet_needs_only_the_shared_setup(i: int) -> None:
    setup_bound, _ = bound_and_used(SETUP)
    bound, used = bound_and_used(SNIPPETS[i])
    missing = used - bound - setup_bound - set(dir(builtins))
    assert not missing, f"snippet {i + 1} uses {sorted(missing)}, defined in no snippet it runs with"
