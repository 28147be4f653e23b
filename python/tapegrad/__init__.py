"""tapegrad from Python: models, parameters as numpy views, loss and gradients.

    import numpy as np, tapegrad
    m = tapegrad.Model("models/elman.yaml", dtype="float64")
    p = m.init_params(seed=1)
    loss, grads = m.loss_and_grad(p, x=np.zeros((3, 2)), y=np.ones((3, 1)))

The library is loaded through cffi (ABI mode) from beside the package when
installed, else from the repository's build/ (see docs/python.md).
"""
from .errors import (Error, ArgError, ShapeError, NoMemoryError, NotFoundError, NonFiniteError,
                     ParseError, IOError, LimitError, CheckError, DTypeError)
from .core import Context, Tape, Tensor, Params, Grads
from .ops import register_op, registered_ops
from .model import Model, Outputs, CheckResult
from .train import Trainer, TrainSet, Progress, load_checkpoint

__version__ = "0.1.0"

__all__ = ["Error", "ArgError", "ShapeError", "NoMemoryError", "NotFoundError", "NonFiniteError",
           "ParseError", "IOError", "LimitError", "CheckError", "DTypeError",
           "Context", "Tape", "Tensor", "Params", "Grads", "register_op", "registered_ops",
           "Model", "Outputs", "CheckResult", "Trainer", "TrainSet", "Progress", "load_checkpoint"]


def __getattr__(name):
    # tapegrad.torch is imported on first use: torch is optional
    if name == "torch":
        import importlib
        return importlib.import_module(".torch", __name__)
    raise AttributeError("module 'tapegrad' has no attribute %r" % name)
