"""The README's Python example and examples/min_char_rnn.py run as written."""
import os
import re
import subprocess
import sys

from conftest import ROOT


def run(code_or_args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_readmes_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    assert 10 <= len(code.strip().splitlines()) <= 12
    code = code.replace('"run.ckpt"', repr(str(tmp_path / "run.ckpt")))
    r = run(code + "\nprint('ok', outs['o'].shape, tr.end)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok (50, 2, 8) epochs"
    assert (tmp_path / "run.ckpt").is_file()


def test_min_char_rnn_learns(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    r = run([str(ROOT / "examples/min_char_rnn.py"), str(text), "1001"])
    assert r.returncode == 0, r.stderr
    losses = [float(x) for x in re.findall(r"^iter \d+, loss: ([\d.]+)$", r.stdout, flags=re.M)]
    assert len(losses) == 3  # iterations 0, 500, 1000
    assert losses[-1] < losses[0] * 0.9
