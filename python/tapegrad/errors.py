"""Library errors as Python exceptions: one class per tg_status."""
import re

__all__ = ["Error", "ArgError", "ShapeError", "NoMemoryError", "NotFoundError",
           "NonFiniteError", "ParseError", "IOError", "LimitError", "CheckError",
           "DTypeError", "error_class"]


class Error(Exception):
    """Base class of every error the library reports.

    status: the tg_status name ("TG_ERR_SHAPE", ...); message: tg_errmsg();
    file, line, column: the FILE:LINE:COL the message starts with or names
    ("... at lstm.yaml:7:9"), else None.
    """
    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.file, self.line, self.column = _location(message)


_LOC_START = re.compile(r"^(?P<f>[^\s:][^:\n]*):(?P<l>\d+):(?P<c>\d+): ")
_LOC_AT = re.compile(r" at (?P<f>[^\s:()]+):(?P<l>\d+):(?P<c>\d+)")


def _location(message):
    m = _LOC_START.match(message) or _LOC_AT.search(message)
    if not m:
        return None, None, None
    return m.group("f"), int(m.group("l")), int(m.group("c"))


class ArgError(Error, ValueError):
    """TG_ERR_ARG: a bad argument or option."""
    status = "TG_ERR_ARG"


class ShapeError(Error, ValueError):
    """TG_ERR_SHAPE: operand shapes do not fit the op."""
    status = "TG_ERR_SHAPE"


class NoMemoryError(Error, MemoryError):
    """TG_ERR_NOMEM: the allocator said no."""
    status = "TG_ERR_NOMEM"


class NotFoundError(Error, LookupError):
    """TG_ERR_NOTFOUND: unknown op or parameter name."""
    status = "TG_ERR_NOTFOUND"


class NonFiniteError(Error, ArithmeticError):
    """TG_ERR_NONFINITE: a NaN or Inf where a finite number is required."""
    status = "TG_ERR_NONFINITE"


class ParseError(Error, ValueError):
    """TG_ERR_PARSE: a model, data or params file is malformed."""
    status = "TG_ERR_PARSE"


class IOError(Error, OSError):
    """TG_ERR_IO: a file could not be read or written ."""
    status = "TG_ERR_IO"

    def __str__(self):
        return self.message


class LimitError(Error, ValueError):
    """TG_ERR_LIMIT: a documented size limit was exceeded."""
    status = "TG_ERR_LIMIT"


class CheckError(Error, AssertionError):
    """TG_ERR_CHECK: a gradient check failed its tolerance (.result holds it)."""
    status = "TG_ERR_CHECK"
    result = None


class DTypeError(ValueError, TypeError):
    """An array's dtype would lose precision in the model's dtype."""


# In the order of enum tg_status: TG_ERR_ARG = 1, ..., TG_ERR_CHECK = 9.
_BY_CODE = {i + 1: c for i, c in enumerate((ArgError, ShapeError, NoMemoryError, NotFoundError,
                                            NonFiniteError, ParseError, IOError, LimitError,
                                            CheckError))}
for _code, _cls in _BY_CODE.items():
    _cls.code = _code
Error.code = None


def error_class(code):
    """The exception class for a tg_status value."""
    return _BY_CODE.get(int(code), Error)
