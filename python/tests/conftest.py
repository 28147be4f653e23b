"""Shared helpers: the repository's paths, the command-line tool of each precision."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

import tapegrad  # noqa: E402

DTYPES = ("float32", "float64")
REAL = {"float32": "float", "float64": "double"}
MODELS = sorted((ROOT / "models").glob("*.yaml"))


def tool_path(dtype):
    return ROOT / "build" / REAL[dtype] / "tapegrad"


def tool(dtype, *args, check=True):
    """Runs build/<real>/tapegrad with args; stdout (parsed when JSON)."""
    exe = tool_path(dtype)
    if not exe.is_file():
        pytest.fail("%s is not built: run `make` (it builds both precisions)" % exe)
    r = subprocess.run([str(exe)] + [str(a) for a in args], capture_output=True, text=True, cwd=ROOT)
    if check and r.returncode != 0:
        pytest.fail("tapegrad %s failed (%d): %s" % (" ".join(map(str, args)), r.returncode, r.stderr))
    return r


def tool_json(dtype, *args):
    return json.loads(tool(dtype, *args).stdout)


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


@pytest.fixture
def root():
    return ROOT


def model_path(name):
    return str(ROOT / "models" / name)
