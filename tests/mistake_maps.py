"""The everyday mistakes as tensors, for the error map tests: each is the wrong backward of
``examples/mistakes/`` (or a one-line variant of it) run on seeded inputs, beside what
autograd says the gradient is.

A :class:`Mistake` also makes the :class:`~gradcheck_cli.result.Check` a failing run would
report, with its error map, so the table and HTML tests render what a user sees without
depending on how the runner fills a check.
"""

from __future__ import annotations

import math
import runpy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from gradcheck_cli.errormap import build_error_map
from gradcheck_cli.result import CaseResult, Check

from .conftest import EXAMPLES

MISTAKES = EXAMPLES / "mistakes"
ATOL = RTOL = 1e-7  # float64's default tolerance


def _code(name: str, replace: tuple[str, str] | None = None) -> dict[str, Any]:
    """The namespace of examples/mistakes/<name>.py, with one line replaced if asked."""
    path = MISTAKES / f"{name}.py"
    if replace is None:
        return runpy.run_path(str(path))
    source = path.read_text(encoding="utf-8")
    assert replace[0] in source, f"{replace[0]!r} is not in {path}"
    namespace: dict[str, Any] = {}
    exec(compile(source.replace(*replace), str(path), "exec"), namespace)
    return namespace


def _randn(*shape: int, min_abs: float = 0.0) -> torch.Tensor:
    t = torch.randn(*shape, dtype=torch.float64)
    return t.sign() * t.abs().clamp_min(min_abs) if min_abs else t


@dataclass
class Mistake:
    name: str  # the checked tensor
    kind: str
    expected: torch.Tensor
    actual: torch.Tensor
    labels: list[str | None]
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    diagnosis: str | None = None
    hint: str | None = None

    @property
    def allowance(self) -> torch.Tensor:
        return ATOL + RTOL * self.expected.abs()

    @property
    def wrong(self) -> torch.Tensor:
        """Where the elements are out of tolerance (what the map must mark)."""
        return (self.actual - self.expected).abs() > self.allowance

    def error_map(self, **limits: int) -> Any:
        return build_error_map(self.expected, self.actual, self.allowance, self.labels, **limits)

    def check(self) -> Check:
        """The failing check of this tensor, as a run reports it, with its error map."""
        e, a = self.expected, self.actual
        diff = (a - e).abs()
        excess = diff - self.allowance
        flat = int(excess.reshape(-1).argmax())
        index = [int(i) for i in torch.unravel_index(torch.tensor(flat), e.shape)]
        rel = diff / e.abs()
        return Check(
            name=self.name,
            kind=self.kind,
            expected_shape=list(e.shape),
            actual_shape=list(a.shape),
            status="mismatch",
            max_abs_err=float(diff.max()),
            max_rel_err=float(rel.nan_to_num(nan=0.0, posinf=math.inf).max()),
            mismatched=int(self.wrong.sum()),
            numel=e.numel(),
            diagnosis=self.diagnosis,
            hint=self.hint,
            worst_index=index,
            expected_value=float(e.reshape(-1)[flat]),
            actual_value=float(a.reshape(-1)[flat]),
            expected_labels=self.labels,
            actual_labels=self.labels,
            error_map=self.error_map(),
        )


def passing(name: str, kind: str, shape: list[int], labels: list[str | None]) -> Check:
    numel = 1
    for s in shape:
        numel *= s
    return Check(
        name, kind, shape, shape, "pass", 0.0, 0.0, 0, numel, expected_labels=labels, actual_labels=labels
    )


def relu_mask(batch: int = 6, features: int = 5, seed: int = 0) -> Mistake:
    """examples/mistakes/relu_mask.py: the backward passes grad_out through where x <= 0 too."""
    torch.manual_seed(seed)
    x = _randn(batch, features, min_abs=0.05).requires_grad_()
    grad_out = _randn(batch, features)
    (expected,) = torch.autograd.grad(F.relu(x), x, grad_out)
    actual = _code("relu_mask")["relu_backward"](grad_out, x.detach())
    return Mistake(
        "x",
        "input",
        expected,
        actual,
        ["batch", "features"],
        {"x": x.detach()},
        "partial",
        "the wrong ones are exactly where x <= 0: a mask (like ReLU's) is missing",
    )


def transposed_square(n: int = 5, size: int = 4, seed: int = 0) -> Mistake:
    """examples/mistakes/transposed_weight.py with in == out: w.g is right in shape, transposed."""
    torch.manual_seed(seed)
    x, w, b = _randn(n, size), _randn(size, size).requires_grad_(), _randn(size)
    grad_out = _randn(n, size)
    (expected,) = torch.autograd.grad(x @ w + b, w, grad_out)
    out = (x @ w + b).detach()
    out.g = grad_out  # type: ignore[attr-defined]
    wd = w.detach()
    _code("transposed_weight")["lin_grad"](x, out, wd, b)
    return Mistake("w", "param", expected, wd.g, ["in", "out"], {}, "transposed", "w gradient is transposed")  # type: ignore[attr-defined]


def bias_reshaped(batch: int = 5, features: int = 4, out: int = 8, seed: int = 0) -> Mistake:
    """examples/mistakes/bias_not_summed.py, with its shape error 'fixed' by a reshape to the
    bias's shape instead of a sum: the shapes agree and every element is wrong."""
    torch.manual_seed(seed)
    x, weight, bias = _randn(batch, features), _randn(out, features), _randn(out).requires_grad_()
    grad_out = _randn(batch, out)
    (expected,) = torch.autograd.grad(F.linear(x, weight, bias), bias, grad_out)
    code = _code(
        "bias_not_summed",
        ("grad_bias = grad_out ", "grad_bias = grad_out.reshape(-1)[: bias.numel()] "),
    )
    _, _, actual = code["linear_backward"](grad_out, x, weight, bias.detach())
    return Mistake("bias", "param", expected, actual, ["out"])


def strided_conv_edge(n: int = 2, c_in: int = 3, size: int = 8, seed: int = 0) -> Mistake:
    """examples/mistakes/strided_conv_edge.py: a stride-2 convolution's input gradient computed
    as a transposed convolution without output_padding, so its last row and column are lost
    (and zero-padding back to x's shape hides it)."""
    torch.manual_seed(seed)
    x = _randn(n, c_in, size, size).requires_grad_()
    weight = _randn(4, c_in, 3, 3)
    out = F.conv2d(x, weight, stride=2, padding=1)
    grad_out = _randn(*out.shape)
    (expected,) = torch.autograd.grad(out, x, grad_out)
    actual, _ = _code("strided_conv_edge")["conv_backward"](grad_out, x.detach(), weight)
    inputs = {"x": x.detach(), "weight": weight, "grad_out": grad_out}
    return Mistake("x", "input", expected, actual, ["n", "c_in", "h", "w"], inputs)


def result_of(spec: str, *checks: Check, **fields: Any) -> CaseResult:
    """A result of ``checks`` (its status from them) for spec ``spec``."""
    result = CaseResult(
        spec=spec, source=f"specs/{spec}.yaml", dims={}, dtype="float64", device="cpu", seed=0
    )
    result.checks = list(checks)
    for key, value in fields.items():
        setattr(result, key, value)
    return result.finish() if "status" not in fields else result
