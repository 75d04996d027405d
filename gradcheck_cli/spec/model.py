"""The spec data model: frozen dataclasses, validated when they are built.

Everything downstream takes a :class:`Spec`, never a raw dict: the YAML
loader (:mod:`.sections`) and the Python API build the same objects, and
each section's invariants are checked where it is built. A spec holds its
parsed expressions and calls, so nothing is parsed twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..calls import Call
from ..errors import SpecError
from ..expressions import Expression, ExpressionError, evaluate, evaluate_int, evaluate_number
from ..names import did_you_mean

# The conventions a hand-written side can be written in (README: "Check your own backward").
CONVENTIONS = ("functional", "fastai", "class", "numpy", "autograd_function", "step")
CONVENTION_ALIASES = {"cs231n": "numpy"}
INPUT_DTYPES = ("float", "int64", "int32", "bool")
MAX_DIM = 2**40  # no tensor has a dim this long; past it, sizes overflow torch's int64 arithmetic
MAX_ELEMENTS = 2**31  # elements in one tensor (16 GiB in float64): past it a spec is a typo, not a layer
# The values an integer input's low (included) and high (excluded) may take: torch.randint's range.
INT_RANGES = {"int64": (-(2**63), 2**63 - 1), "int32": (-(2**31), 2**31)}
BACKENDS = ("torch", "numpy")

Size = Expression | int  # a shape entry: a number, or arithmetic over dims and options


def finite(value: Any) -> bool:
    """A YAML number that is a finite float: not a bool, not .inf or .nan, not 10**400 (no float holds it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@dataclass(frozen=True)
class TensorSpec:
    """One tensor the layer receives: an input or a learnable parameter."""

    name: str
    kind: str  # "input" or "param"
    shape: tuple[Size, ...]
    dtype: str = "float"  # "float" means the run's dtype
    low: Expression | float | None = None
    high: Expression | float | None = None
    grad: bool = True  # checked: its gradient is compared
    min_abs: float | None = None
    line: int | None = None
    permutation: int | None = None  # the axis along which each slice is a seeded permutation of 0..n-1
    derived: Expression | None = None  # the value of this expression over earlier tensors (its own dtype)

    @property
    def is_float(self) -> bool:
        return self.dtype == "float"

    @property
    def key(self) -> str:
        """Where it is in the YAML: ``inputs.x``, ``params.w``."""
        return f"{self.kind}s.{self.name}"


@dataclass(frozen=True)
class CodeSource:
    """Where user code lives: a dotted module, a file, or (Python API) a namespace."""

    module: str | None = None
    file: Path | None = None
    namespace: Mapping[str, Any] | None = field(default=None, compare=False)
    cells: tuple[int, ...] | None = None  # a notebook's cells to load (indices in the .ipynb file)

    @property
    def is_notebook(self) -> bool:
        return self.file is not None and self.file.suffix == ".ipynb"

    def describe(self) -> str:
        if self.module:
            return self.module
        if self.file:
            return str(self.file)
        return "<python>"


@dataclass(frozen=True)
class Reference:
    """The PyTorch side: an expression, a call into user-supplied torch code, or none at all
    (``numerical``: finite differences of the hand-written forward are the expected values)."""

    expr: Expression | None = None
    call: Call | None = None
    source: CodeSource | None = None
    numerical: bool = False
    samples: int | None = None  # numerical: elements per tensor above which a sample is checked; 0 all

    def describe(self) -> str:
        if self.numerical:
            return "numerical"
        if self.expr is not None:
            return self.expr.text
        assert self.call is not None
        return f"{self.call.text} from {self.source.describe() if self.source else '?'}"


@dataclass(frozen=True)
class Implementation:
    """The hand-written side and the convention it is written in."""

    source: CodeSource
    convention: str  # one of CONVENTIONS
    forward: Call | None = None
    backward: Call | None = None
    cls: Call | None = None  # the spec's `class:` key
    autograd_function: str | None = None
    args: tuple[Expression, ...] | None = None  # what .apply is handed
    backend: str = "torch"
    forward_checked: bool = True  # False: the "forward" only computes `out` (Python API)
    # Classes that keep their state on attributes (`class:` only):
    set_attributes: dict[str, Expression] = field(default_factory=dict)  # `set:` attribute path -> value
    grad_attributes: dict[str, str] = field(default_factory=dict)  # `grads:` tensor -> attribute path
    # A training step instead of a backward: gradients read from the update of each param.
    step: Call | None = None
    learning_rate: Expression | float | None = None

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise SpecError(f"unknown convention {self.convention!r}; choose one of {', '.join(CONVENTIONS)}")


@dataclass(frozen=True)
class ToleranceSpec:
    """A spec's own tolerance, when it sets one (see :mod:`gradcheck_cli.tolerance`)."""

    atol: float | None = None
    rtol: float | None = None
    mode: str | None = None  # "absolute" or "calibrated"
    ratio: float | None = None  # calibrated: how many times PyTorch's own error


@dataclass(frozen=True)
class Expectation:
    """A spec's ``xfail:`` or ``skip:``: a reason, maybe only for some dtypes or devices."""

    reason: str
    dtypes: tuple[str, ...] | None = None  # None: every dtype
    devices: tuple[str, ...] | None = None  # "cuda" covers cuda:N

    def applies(self, dtype: str, device: str) -> bool:
        kind = device.partition(":")[0]
        return (self.dtypes is None or dtype in self.dtypes) and (
            self.devices is None or device in self.devices or kind in self.devices
        )


@dataclass(frozen=True)
class Spec:
    """A layer to check, validated: see the README's "Spec format"."""

    name: str
    description: str
    dims: dict[str, int]
    inputs: dict[str, TensorSpec]
    params: dict[str, TensorSpec]
    reference: Reference
    implementation: Implementation
    options: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ("out",)
    tolerance: ToleranceSpec = field(default_factory=ToleranceSpec)
    formulas: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    notes: tuple[str, ...] = ()  # said in every result of this spec
    constraints: tuple[Expression, ...] = ()  # comparisons over dims and options that sizes must meet
    # Expected gradients written directly (surrogates): tensor -> an expression over the
    # tensors, dims, options and the upstream gradients; the others come from autograd.
    reference_grads: dict[str, Expression] = field(default_factory=dict)
    double: bool = False  # also check the double backward (an autograd.Function's)
    xfail: Expectation | None = None  # expected to fail (strict: a pass is reported)
    skip: Expectation | None = None  # not run
    timeout: float | None = None  # seconds it may run (--timeout wins)

    # -- derived views ----------------------------------------------------
    @property
    def tensors(self) -> dict[str, TensorSpec]:
        return {**self.inputs, **self.params}

    @property
    def checked(self) -> list[TensorSpec]:
        """The tensors whose gradients are compared, in spec order."""
        return [t for t in self.tensors.values() if t.grad]

    @property
    def value_names(self) -> set[str]:
        """The names an expression of this spec may read: tensors, dims and options."""
        return set(self.tensors) | set(self.dims) | set(self.options)

    @property
    def source(self) -> str:
        """The spec file, relative to the current directory when it is below it."""
        if self.path is None:
            return "<python>"
        try:
            return str(self.path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(self.path)

    def files_read(self) -> dict[str, Path]:
        """The files a check of this spec reads: the spec itself and its code files."""
        found = {"spec file": self.path} if self.path is not None else {}
        for key, source in (
            ("implementation file", self.implementation.source),
            ("reference file", self.reference.source),
        ):
            if source is not None and source.file is not None:
                found[key] = source.file
        return {k: v for k, v in found.items() if v is not None}

    def grad_names(self) -> dict[str, str]:
        """Names a call may use for an upstream gradient -> the output it belongs to."""
        return grad_names(self.outputs)

    def line_of(self, key: str) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0]
        return None

    def error(self, message: str, key: str | None = None) -> SpecError:
        return SpecError(message, self.path, self.line_of(key) if key else None, key)

    def resolve_dims(self, overrides: Mapping[str, int] | None = None) -> dict[str, int]:
        """The spec's dims with overrides applied; each must be a positive int."""
        dims = dict(self.dims)
        for name, value in (overrides or {}).items():
            if name not in dims:
                raise SpecError(
                    path=self.path,
                    message=f"{self.name} has no dim {name!r}{did_you_mean(name, dims)}"
                    f" (its dims: {', '.join(dims) or 'none'})",
                )
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise SpecError(f"dim {name!r} must be a positive integer, got {value!r}")
            if value > MAX_DIM:
                raise SpecError(f"dim {name!r} is {value}: larger than any tensor can be (at most {MAX_DIM})")
            dims[name] = value
        return dims

    def with_options(self, overrides: Mapping[str, Any]) -> Spec:
        """A copy with some options set to other values (each must exist)."""
        for name in overrides:
            if name not in self.options:
                raise SpecError(
                    path=self.path,
                    message=f"{self.name} has no option {name!r}{did_you_mean(name, self.options)}"
                    f" (its options: {', '.join(self.options) or 'none'})",
                )
        return replace(self, options={**self.options, **overrides})

    def shape_of(self, tensor: TensorSpec, dims: Mapping[str, int]) -> tuple[int, ...]:
        """The tensor's shape with these dims: each size at least 1, at most MAX_ELEMENTS elements."""
        scope = self.numeric_scope(dims)
        shape = []
        for entry in tensor.shape:
            try:
                size = evaluate_int(entry, scope)
            except ExpressionError as exc:
                raise self.error(f"shape entry {_text(entry)!r}: {exc}", tensor.key) from None
            what = f"size {entry.text!r}" if isinstance(entry, Expression) else "a shape size"
            with_dims = f" with {_fmt_dims(dims)}" if isinstance(entry, Expression) else ""
            if size < 1:
                raise self.error(f"{what} must be at least 1, got {shown(size)}{with_dims}", tensor.key)
            if size > MAX_ELEMENTS:
                raise self.error(
                    f"{what} is {shown(size)}{with_dims}: larger than any tensor can be"
                    " (at most 2**31 elements)",
                    tensor.key,
                )
            shape.append(size)
        elements = math.prod(shape)
        if elements > MAX_ELEMENTS:
            raise self.error(
                f"shape {list(shape)} is {shown(elements)} elements, more than a tensor may have"
                f" (2**31 = {MAX_ELEMENTS})",
                tensor.key,
            )
        return tuple(shape)

    def check_sizes(self, dims: Mapping[str, int]) -> None:
        """Every tensor's shape with these dims is drawable, and integer bounds fit their dtype."""
        for t in self.tensors.values():
            if t.derived is not None:
                continue
            self.shape_of(t, dims)
            if t.dtype not in INT_RANGES:
                for name, value in (("low", t.low), ("high", t.high)):
                    number = self.bound(value, dims)
                    if number is not None and not finite(number):
                        raise self.error(
                            f"{name} is {shown(number)}: a bound is a finite number", f"{t.key}.{name}"
                        )
                continue
            lowest, highest = INT_RANGES[t.dtype]
            for name, value in (("low", t.low), ("high", t.high)):
                number = self.bound(value, dims)
                if number is not None and not lowest <= number <= highest:
                    raise self.error(
                        f"{name} is {shown(number)}: an {t.dtype} input's values lie"
                        f" from {lowest} to {highest}",
                        f"{t.key}.{name}",
                    )

    def dim_labels(self, tensor: TensorSpec) -> list[str | None]:
        """For each axis, the dim name when the shape entry is a bare dim name, and the
        arithmetic as written (``2*h``) when it is arithmetic on dims."""
        labels: list[str | None] = []
        for entry in tensor.shape:
            if not isinstance(entry, Expression):
                labels.append(None)
            elif entry.bare_name is not None:
                labels.append(entry.bare_name if entry.bare_name in self.dims else None)
            else:
                labels.append("".join(entry.text.split()) if entry.names & set(self.dims) else None)
        return labels

    def numeric_scope(self, dims: Mapping[str, int]) -> dict[str, float | int]:
        scope: dict[str, float | int] = {
            k: v for k, v in self.options.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        scope.update(dims)
        return scope

    def broken_constraint(self, dims: Mapping[str, int]) -> Expression | None:
        """The first constraint these dims do not meet (one that cannot be evaluated does not)."""
        scope = self.numeric_scope(dims)
        for constraint in self.constraints:
            try:
                met = evaluate(constraint, scope)
            except ExpressionError:
                met = False
            if not met:
                return constraint
        return None

    def check_constraints(self, dims: Mapping[str, int]) -> None:
        """A spec error naming the constraint that these dims break, with the values it read;
        else one naming a tensor these dims make empty or too large (:meth:`check_sizes`)."""
        broken = self.broken_constraint(dims)
        if broken is None:
            self.check_sizes(dims)
            return
        scope = self.numeric_scope(dims)
        values = ", ".join(
            f"{n}={scope[n]}" for n in sorted(broken.names, key=broken.text.find) if n in scope
        )
        raise self.error(f"the sizes break the constraint {broken.text!r} ({values})", "constraints")

    def bound(self, value: Expression | float | None, dims: Mapping[str, int]) -> float | None:
        if value is None or isinstance(value, (int, float)):
            return value
        return evaluate_number(value, self.numeric_scope(dims))


def grad_names(outputs: tuple[str, ...]) -> dict[str, str]:
    """``grad_out``/``dout`` (one output) and ``grad_<o>``/``d<o>`` -> the output they belong to."""
    names: dict[str, str] = {}
    for out in outputs:
        names[f"grad_{out}"] = out
        names[f"d{out}"] = out
    if len(outputs) == 1:
        names.setdefault("grad_out", outputs[0])
        names.setdefault("dout", outputs[0])
    return names


def _text(entry: Size) -> str | int:
    return entry.text if isinstance(entry, Expression) else entry


def shown(value: Any) -> str:
    """A value for a message: as it is, or a huge integer by its size (``about 2**1328``), not its
    400 digits (Python refuses to print past 4300)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**15:
        return f"{'-' if value < 0 else ''}about 2**{abs(value).bit_length() - 1}"
    return repr(value)


def _fmt_dims(dims: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in dims.items())
