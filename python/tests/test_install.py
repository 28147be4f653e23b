"""`make install PREFIX=...` puts the package beside the library, and it loads that library."""
import os
import subprocess
import sys

from conftest import ROOT


def test_the_installed_package_uses_the_installed_library(tmp_path):
    prefix = tmp_path / "prefix"
    r = subprocess.run(["make", "-s", "install", "PREFIX=%s" % prefix], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    ver = "%d.%d" % sys.version_info[:2]
    pydir = prefix / "lib" / ("python%s" % ver) / "dist-packages"
    assert (pydir / "tapegrad" / "__init__.py").is_file()
    assert (prefix / "lib" / "libtapegrad.so.0").is_file()
    code = """
import numpy as np, tapegrad
from tapegrad import _lib
m = tapegrad.Model(%r)
loss, g = m.loss_and_grad(m.init_params(), x=np.zeros((3, 2), np.float32), y=np.ones((3, 1), np.float32))
print(_lib.load("float32").path)
try:
    tapegrad.Model(%r, dtype="float64")
except ImportError as e:
    print("no float64:", str(e).splitlines()[0])
""" % (str(ROOT / "models/elman.yaml"), str(ROOT / "models/elman.yaml"))
    env = dict(os.environ, PYTHONPATH=str(pydir))
    env.pop("TAPEGRAD_LIB_DIR", None)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str(prefix / "lib" / "libtapegrad.so.0")
    # only the float build was installed: float64 says what is missing
    assert lines[1] == "no float64: tapegrad: cannot find libtapegrad64.so for dtype float64; looked in:"
