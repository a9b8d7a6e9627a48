"""The README cannot drift from the code: its "first look" block prints what its comment lines
say, and .ci/run runs the README's test command verbatim."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SET_UP = ["pip install -e . && pafree train",            # install and run the main job
          'pip install -e ".[test,cuda]" && pytest && NUMBA_ENABLE_CUDASIM=1 pytest tests/cuda']


def section(title):
    """The text of the README section headed ``## title``, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README has no section '## {title}'"
    return match.group(1)


def code_blocks(text, lang=""):
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def test_first_look_prints_its_comment_lines():
    blocks = code_blocks(section("A first look"), "python")
    assert len(blocks) == 1, "the first look should be one python block"
    code = blocks[0]
    expected = [line[2:] for line in code.splitlines() if line.startswith("# ")]
    assert expected, "the first look shows no output lines"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected


def test_readme_holds_both_set_up_commands_and_ci_runs_the_test_one():
    commands = [block.strip() for block in code_blocks(section("Set-up (two commands on a fresh machine)"))]
    assert commands == SET_UP
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci_lines, ".ci/run must run the README's test command verbatim"
