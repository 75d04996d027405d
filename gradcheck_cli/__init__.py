"""gradcheck: check a hand-written backward pass against PyTorch autograd.

>>> import gradcheck_cli
>>> report = gradcheck_cli.check("layer_specs/lin.yaml", n=7)  # doctest: +SKIP
>>> report.ok, report["b"].status  # doctest: +SKIP
(True, 'pass')

Importing this package does not import torch; running a check does.
"""

__version__ = "0.1.0"

from . import report as _report  # noqa: E402, F401  (gives Report its display: str, repr, Jupyter)
from .api import check  # noqa: E402
from .errors import GradcheckError, SpecError  # noqa: E402
from .result import CaseResult, Check, Report  # noqa: E402
from .spec import Spec, load_spec  # noqa: E402

__all__ = [
    "CaseResult",
    "Check",
    "GradcheckError",
    "Report",
    "Spec",
    "SpecError",
    "__version__",
    "check",
    "load_spec",
]
