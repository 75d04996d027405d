"""The spec data model: YAML loading, validation and shape expressions.

A spec is read once, with a safe YAML loader, and validated here; everything
downstream takes a :class:`Spec`, never a raw dict. Every error names the
file, the line where the YAML says it, and the key. Loading never imports
user code and never evaluates a reference expression.
"""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .calls import Call, CallSyntaxError, parse_call
from .errors import SpecError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

TOP_KEYS = (
    "name",
    "description",
    "dims",
    "options",
    "inputs",
    "params",
    "outputs",
    "reference",
    "implementation",
    "tolerance",
    "formulas",
)
IMPLEMENTATION_KEYS = (
    "module",
    "file",
    "forward",
    "backward",
    "class",
    "autograd_function",
    "args",
    "backend",
)
INPUT_KEYS = ("shape", "dtype", "low", "high", "grad", "min_abs")
REFERENCE_KEYS = ("module", "file", "call")
TOLERANCE_KEYS = ("atol", "rtol")
INPUT_DTYPES = ("float", "int64", "int32", "bool")
BACKENDS = ("torch", "numpy")
# Names a spec may not take: gradcheck's own commands and per-layer options.
COMMANDS = ("list", "show", "run", "new")
RESERVED_DIMS = (
    "dtype",
    "device",
    "seed",
    "atol",
    "rtol",
    "format",
    "output",
    "sweep",
    "explain",
    "verbose",
    "pdb",
    "help",
    "version",
    "exit_zero",
    "jobs",
    "fail_fast",
)
# Names always in scope in a reference expression.
REFERENCE_GLOBALS = ("torch", "F", "math")


# --------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class TensorSpec:
    """One tensor the layer receives: an input or a learnable parameter."""

    name: str
    kind: str  # "input" or "param"
    shape: tuple[str | int, ...]  # ints, dim names or arithmetic on them
    dtype: str = "float"  # "float" means the run's dtype
    low: str | float | None = None
    high: str | float | None = None
    grad: bool = True  # checked: its gradient is compared
    min_abs: float | None = None
    line: int | None = None

    @property
    def is_float(self) -> bool:
        return self.dtype == "float"


@dataclass(frozen=True)
class CodeSource:
    """Where user code lives: a dotted module, a file, or (Python API) a namespace."""

    module: str | None = None
    file: Path | None = None
    namespace: Mapping[str, Any] | None = None

    def describe(self) -> str:
        if self.module:
            return self.module
        if self.file:
            return str(self.file)
        return "<python>"


@dataclass(frozen=True)
class Reference:
    """The PyTorch side: an expression, or a call into user-supplied torch code."""

    expr: str | None = None
    call: Call | None = None
    source: CodeSource | None = None


@dataclass(frozen=True)
class Implementation:
    """The hand-written side and the convention it is written in."""

    source: CodeSource
    forward: Call | None = None
    backward: Call | None = None
    cls: Call | None = None  # the spec's `class:` key
    autograd_function: str | None = None
    args: tuple[str, ...] | None = None
    backend: str = "torch"
    forward_checked: bool = True  # False: the "forward" only computes `out` (Python API)

    @property
    def convention(self) -> str:
        if self.autograd_function:
            return "autograd_function"
        if self.backend == "numpy":
            return "numpy"
        if self.cls is not None:
            return "class"
        if self.backward is not None and self.backward.returns is None:
            return "fastai"
        return "functional"


@dataclass(frozen=True)
class Tolerance:
    atol: float | None = None
    rtol: float | None = None


@dataclass
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
    tolerance: Tolerance = field(default_factory=Tolerance)
    formulas: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    lines: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # said in every result of this spec

    # -- derived views ----------------------------------------------------
    @property
    def tensors(self) -> dict[str, TensorSpec]:
        return {**self.inputs, **self.params}

    @property
    def checked(self) -> list[TensorSpec]:
        """The tensors whose gradients are compared, in spec order."""
        return [t for t in self.tensors.values() if t.grad]

    @property
    def source(self) -> str:
        """The spec file, relative to the current directory when it is below it."""
        if self.path is None:
            return "<python>"
        try:
            return str(self.path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(self.path)

    def grad_names(self) -> dict[str, str]:
        """Names a call may use for an upstream gradient -> the output it belongs to."""
        names: dict[str, str] = {}
        for out in self.outputs:
            names[f"grad_{out}"] = out
            names[f"d{out}"] = out
        if len(self.outputs) == 1:
            names.setdefault("grad_out", self.outputs[0])
            names.setdefault("dout", self.outputs[0])
        return names

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
        scope = self.numeric_scope(dims)
        key = f"{tensor.kind}s.{tensor.name}"
        shape = []
        for entry in tensor.shape:
            try:
                size = eval_int_expr(entry, scope)
            except ValueError as exc:
                raise self.error(f"shape entry {entry!r}: {exc}", key) from None
            if size < 0:
                raise self.error(f"shape entry {entry!r} is {size} with {_fmt_dims(dims)}", key)
            shape.append(size)
        return tuple(shape)

    def dim_labels(self, tensor: TensorSpec) -> list[str | None]:
        """For each axis, the dim name when the shape entry is a bare dim name."""
        return [e if isinstance(e, str) and e in self.dims else None for e in tensor.shape]

    def numeric_scope(self, dims: Mapping[str, int]) -> dict[str, float | int]:
        scope: dict[str, float | int] = {
            k: v for k, v in self.options.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        scope.update(dims)
        return scope

    def bound(self, value: str | float | None, dims: Mapping[str, int]) -> float | None:
        if value is None or isinstance(value, (int, float)):
            return value
        return eval_number_expr(value, self.numeric_scope(dims))


def _fmt_dims(dims: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in dims.items())


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------
# Arithmetic expressions over dims and options ("4 * h", "in + 1")

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ARITH_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}


def expr_names(expr: str | int | float) -> set[str]:
    return set(_WORD.findall(expr)) if isinstance(expr, str) else set()


def eval_number_expr(expr: str | int | float, scope: Mapping[str, float | int]) -> float | int:
    """Evaluate arithmetic over names in ``scope``; names may be Python keywords."""
    if isinstance(expr, (int, float)) and not isinstance(expr, bool):
        return expr
    if not isinstance(expr, str):
        raise ValueError(f"expected a number or an expression, got {expr!r}")
    # Mangle every name so that dims called `in` or `lambda` parse as names.
    mangled = _WORD.sub(lambda m: "_n_" + m.group(), expr)
    try:
        tree = ast.parse(mangled.strip(), mode="eval")
    except SyntaxError:
        raise ValueError("not an arithmetic expression") from None

    def walk(node: ast.AST) -> float | int:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            if isinstance(node.value, bool):
                raise ValueError("True/False are not sizes")
            return node.value
        if isinstance(node, ast.Name):
            name = node.id[3:]
            if name not in scope:
                raise ValueError(f"unknown name {name!r}{did_you_mean(name, scope)}")
            return scope[name]
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_OPS:
            try:
                return _ARITH_OPS[type(node.op)](walk(node.left), walk(node.right))  # type: ignore[no-any-return]
            except ZeroDivisionError:
                raise ValueError("division by zero") from None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        raise ValueError("only numbers, names and + - * / // % ** are allowed")

    return walk(tree.body)


def eval_int_expr(expr: str | int, scope: Mapping[str, float | int]) -> int:
    value = eval_number_expr(expr, scope)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"is {value}, not a whole number")
        value = int(value)
    return value


# --------------------------------------------------------------------------
# Loading


def _line_map(
    node: yaml.Node, path: Path | None, prefix: str = "", lines: dict[str, int] | None = None
) -> dict[str, int]:
    """Map each key path ("implementation.backward", "inputs.x") to its 1-based line.

    A key given twice in one mapping is an error (YAML would keep the last silently).
    """
    lines = {} if lines is None else lines
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            if key in seen:
                raise SpecError(
                    f"{key!r} is given twice (the first at line {lines[where]})", path, line, where
                )
            seen.add(key)
            lines[where] = line
            _line_map(value_node, path, where, lines)
    return lines


def parse_yaml(text: str, path: Path | None = None) -> tuple[Any, dict[str, int]]:
    """Read YAML once, safely; return the data and the line of every key."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"invalid YAML: {problem}", path, mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()
    return data, (_line_map(node, path) if node is not None else {})


def load_spec(path: str | Path) -> Spec:
    """Load and validate one spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec: {exc.strerror}", path) from None
    data, lines = parse_yaml(text, path)
    return build_spec(data, path=path, lines=lines)


_TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:", re.M)


def looks_like_spec(path: Path) -> bool:
    """Cheap test used when scanning directories: a YAML file whose top-level keys
    include ``reference`` or ``implementation`` (or a near-miss spelling of one, so
    that a typo becomes a reported spec error instead of a silently skipped file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    keys = set(_TOP_KEY.findall(text))
    return any(
        difflib.get_close_matches(key, ("reference", "implementation"), n=1, cutoff=0.8) for key in keys
    )


class _Builder:
    """Validates the raw YAML data and reports errors at the right line."""

    def __init__(self, path: Path | None, lines: dict[str, int]) -> None:
        self.path = path
        self.lines = lines

    def fail(self, key: str, message: str) -> SpecError:
        line = None
        probe = key
        while probe:
            if probe in self.lines:
                line = self.lines[probe]
                break
            probe = probe.rpartition(".")[0]
        return SpecError(message, self.path, line, key or None)

    def mapping(self, value: Any, key: str, allowed: Iterable[str] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}")
            if allowed is not None and k not in allowed:
                sub = f"{key}.{k}" if key else k
                raise self.fail(sub, f"unknown key{did_you_mean(k, allowed)}; allowed: {', '.join(allowed)}")
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def call(self, value: Any, key: str) -> Call:
        try:
            return parse_call(self.string(value, key))
        except CallSyntaxError as exc:
            raise self.fail(key, str(exc)) from None

    def source(self, raw: dict[str, Any], key: str) -> CodeSource:
        module, file = raw.get("module"), raw.get("file")
        if (module is None) == (file is None):
            raise self.fail(key, "give exactly one of 'module:' (a dotted module) or 'file:' (a .py path)")
        if module is not None:
            module = self.string(module, f"{key}.module")
            if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module):
                raise self.fail(f"{key}.module", f"{module!r} is not a dotted module name")
            return CodeSource(module=module)
        file_path = Path(self.string(file, f"{key}.file"))
        if not file_path.is_absolute() and self.path is not None:
            file_path = self.path.parent / file_path
        if not file_path.is_file():
            raise self.fail(f"{key}.file", f"file {str(file_path)!r} does not exist")
        return CodeSource(file=file_path)


def build_spec(data: Any, path: Path | None = None, lines: dict[str, int] | None = None) -> Spec:
    """Validate raw spec data (as read from YAML) into a :class:`Spec`."""
    b = _Builder(path, lines or {})
    top = b.mapping(data, "", TOP_KEYS)
    for required in ("name", "reference", "implementation"):
        if required not in top:
            raise b.fail("", f"missing required key {required!r}")

    name = b.string(top["name"], "name")
    if not NAME_RE.match(name):
        raise b.fail("name", f"{name!r} must match [a-z][a-z0-9_]*")
    if name in COMMANDS:
        raise b.fail("name", f"{name!r} is a gradcheck command; choose another name")
    description = str(top.get("description") or "").strip()

    dims: dict[str, int] = {}
    for dim, size in b.mapping(top.get("dims"), "dims").items():
        if not IDENT_RE.match(dim):
            raise b.fail(f"dims.{dim}", "a dim name must be an identifier")
        if dim in REFERENCE_GLOBALS:
            raise b.fail(f"dims.{dim}", f"{dim!r} is the {dim} module in a reference; choose another name")
        if dim in RESERVED_DIMS:
            raise b.fail(f"dims.{dim}", f"{dim!r} clashes with gradcheck's own --{dim} option")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise b.fail(f"dims.{dim}", f"must be a positive integer, got {size!r}")
        dims[dim] = size

    options = dict(b.mapping(top.get("options"), "options"))
    for opt in options:
        if not IDENT_RE.match(opt):
            raise b.fail(f"options.{opt}", "an option name must be an identifier")
        if opt in REFERENCE_GLOBALS:
            raise b.fail(f"options.{opt}", f"{opt!r} is the {opt} module in a reference; choose another name")
        if opt in dims:
            raise b.fail(f"options.{opt}", f"{opt!r} is already a dim")

    numeric = {k: 1 for k in dims} | {
        k: 1 for k, v in options.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }

    def check_expr(expr: Any, key: str) -> str | int | float:
        if isinstance(expr, bool) or not isinstance(expr, (str, int, float)):
            raise b.fail(key, f"expected a number, a dim name or arithmetic on dims, got {expr!r}")
        for word in expr_names(expr):
            if word not in numeric:
                raise b.fail(key, f"unknown dim {word!r}{did_you_mean(word, numeric)} in {expr!r}")
        try:
            eval_number_expr(expr, {**numeric, **dims})
        except ValueError as exc:
            raise b.fail(key, f"{expr!r}: {exc}") from None
        return expr

    tensors: dict[str, TensorSpec] = {}
    groups: dict[str, dict[str, TensorSpec]] = {"inputs": {}, "params": {}}
    for group, kind in (("inputs", "input"), ("params", "param")):
        for tname, raw in b.mapping(top.get(group), group).items():
            key = f"{group}.{tname}"
            if not IDENT_RE.match(tname):
                raise b.fail(key, "a tensor name must be an identifier")
            if tname in tensors or tname in dims or tname in options:
                raise b.fail(key, f"name {tname!r} is used twice")
            if tname in REFERENCE_GLOBALS:
                raise b.fail(key, f"name {tname!r} is reserved in reference expressions")
            fields = b.mapping(raw, key, INPUT_KEYS) if isinstance(raw, dict) else {"shape": raw}
            if "shape" not in fields:
                raise b.fail(key, "missing 'shape'")
            shape_raw = fields["shape"]
            if not isinstance(shape_raw, list):
                raise b.fail(key, f"a shape is a list like [batch, in], got {shape_raw!r}")
            shape = tuple(check_expr(e, key) for e in shape_raw)
            dtype = fields.get("dtype", "float")
            if dtype in ("float32", "float64"):
                dtype = "float"
            if dtype not in INPUT_DTYPES:
                raise b.fail(f"{key}.dtype", f"dtype must be one of {', '.join(INPUT_DTYPES)}, got {dtype!r}")
            if kind == "param" and dtype != "float":
                raise b.fail(f"{key}.dtype", "params are float tensors")
            grad = fields.get("grad", dtype == "float")
            if not isinstance(grad, bool):
                raise b.fail(f"{key}.grad", f"expected true or false, got {grad!r}")
            if grad and dtype != "float":
                raise b.fail(f"{key}.grad", f"an {dtype} tensor has no gradient; set grad: false")
            if kind == "param" and not grad:
                raise b.fail(f"{key}.grad", "params are always checked; make it an input")
            low = check_expr(fields["low"], f"{key}.low") if "low" in fields else None
            high = check_expr(fields["high"], f"{key}.high") if "high" in fields else None
            if dtype in ("int64", "int32") and (low is None or high is None):
                raise b.fail(key, "an integer input needs 'low' and 'high' (high excluded)")
            min_abs = fields.get("min_abs")
            if min_abs is not None and (
                isinstance(min_abs, bool) or not isinstance(min_abs, (int, float)) or min_abs < 0
            ):
                raise b.fail(f"{key}.min_abs", f"expected a non-negative number, got {min_abs!r}")
            spec_t = TensorSpec(
                name=tname,
                kind=kind,
                shape=shape,  # type: ignore[arg-type]
                dtype=dtype,
                low=low,  # type: ignore[arg-type]
                high=high,  # type: ignore[arg-type]
                grad=grad,
                min_abs=float(min_abs) if min_abs is not None else None,
                line=b.lines.get(key),
            )
            tensors[tname] = spec_t
            groups[group][tname] = spec_t
    if not any(t.grad for t in tensors.values()):
        raise b.fail("inputs", "nothing to check: give at least one float input or param")

    outputs_raw = top.get("outputs", ["out"])
    if isinstance(outputs_raw, str):
        outputs_raw = [outputs_raw]
    if not isinstance(outputs_raw, list) or not outputs_raw:
        raise b.fail("outputs", "expected a list of output names")
    outputs = tuple(b.string(o, "outputs") for o in outputs_raw)
    for o in outputs:
        # An output may share a dim's name (linear has dim `out` and output `out`):
        # in calls, names bound by the forward shadow dims and options.
        if not IDENT_RE.match(o) or o in tensors:
            raise b.fail("outputs", f"output name {o!r} must be an identifier that is not a tensor")

    value_names = set(tensors) | set(dims) | set(options)

    # -- reference --------------------------------------------------------
    ref_raw = top["reference"]
    if isinstance(ref_raw, str):
        from .reference import ReferenceSyntaxError, parse_reference

        try:
            parse_reference(ref_raw, value_names)
        except ReferenceSyntaxError as exc:
            raise b.fail("reference", str(exc)) from None
        reference = Reference(expr=ref_raw)
    else:
        ref_map = b.mapping(ref_raw, "reference", REFERENCE_KEYS)
        if "call" not in ref_map:
            raise b.fail("reference", "a reference mapping needs 'call:' and 'module:' or 'file:'")
        ref_call = b.call(ref_map["call"], "reference.call")
        _check_names(b, ref_call, value_names, "reference.call")
        reference = Reference(call=ref_call, source=b.source(ref_map, "reference"))

    # -- implementation ---------------------------------------------------
    impl_raw = b.mapping(top["implementation"], "implementation", IMPLEMENTATION_KEYS)
    source = b.source(impl_raw, "implementation")
    backend = impl_raw.get("backend", "torch")
    if backend not in BACKENDS:
        raise b.fail(
            "implementation.backend", f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    grad_names = set(_grad_names(outputs))
    cls = b.call(impl_raw["class"], "implementation.class") if "class" in impl_raw else None
    if cls is not None:
        if cls.returns is not None:
            raise b.fail("implementation.class", "a class call takes no '->'")
        _check_names(b, cls, value_names, "implementation.class")
    forward = b.call(impl_raw["forward"], "implementation.forward") if "forward" in impl_raw else None
    backward = b.call(impl_raw["backward"], "implementation.backward") if "backward" in impl_raw else None
    autograd_function = impl_raw.get("autograd_function")
    args = impl_raw.get("args")
    bound: set[str] = set()
    if forward is not None:
        _check_names(b, forward, value_names, "implementation.forward")
        if forward.returns is None:
            raise b.fail("implementation.forward", "a forward names what it returns: 'f(x) -> out'")
        bound = {r for r in forward.returns if r != "_"}
        clash = bound & set(tensors)
        if clash:
            raise b.fail(
                "implementation.forward", f"return name {sorted(clash)[0]!r} is already an input or param"
            )
    if autograd_function is not None:
        autograd_function = b.string(autograd_function, "implementation.autograd_function")
        if forward is not None or backward is not None or cls is not None:
            raise b.fail(
                "implementation.autograd_function",
                "an autograd_function is called through .apply: drop forward/backward/class",
            )
        if backend != "torch":
            raise b.fail("implementation.backend", "an autograd_function works on torch tensors")
        if args is None:
            args = list(tensors)
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise b.fail("implementation.args", "expected a list of names")
        for a in args:
            if a not in value_names:
                raise b.fail("implementation.args", f"unknown name {a!r}{did_you_mean(a, value_names)}")
        args = tuple(args)
    else:
        if args is not None:
            raise b.fail("implementation.args", "'args' goes with 'autograd_function'")
        if backward is None:
            raise b.fail("implementation", "missing 'backward:' (or 'autograd_function:')")
        assert backward is not None
        _check_names(b, backward, value_names | grad_names | bound, "implementation.backward")
        checked = [t.name for t in tensors.values() if t.grad]
        if backward.returns is not None:
            for r in backward.returns:
                if r == "_":
                    continue
                if r not in tensors:
                    raise b.fail(
                        "implementation.backward",
                        f"return slot {r!r} is not a checked tensor{did_you_mean(r, checked)};"
                        " name each slot after the tensor it is the gradient of, or '_'",
                    )
                if not tensors[r].grad:
                    raise b.fail(
                        "implementation.backward", f"{r!r} has grad: false, so it has no gradient to return"
                    )
        elif backend == "numpy":
            raise b.fail(
                "implementation.backward",
                "numpy arrays cannot carry a .g attribute: name the gradients with '-> x, w, ...'",
            )

    implementation = Implementation(
        source=source,
        forward=forward,
        backward=backward,
        cls=cls,
        autograd_function=autograd_function,
        args=args,
        backend=backend,
    )

    tol_raw = b.mapping(top.get("tolerance"), "tolerance", TOLERANCE_KEYS)
    for k, v in tol_raw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise b.fail(f"tolerance.{k}", f"expected a non-negative number, got {v!r}")
    tolerance = Tolerance(atol=tol_raw.get("atol"), rtol=tol_raw.get("rtol"))

    formulas = b.mapping(top.get("formulas"), "formulas")
    for k, v in formulas.items():
        if not isinstance(v, str):
            raise b.fail(f"formulas.{k}", "expected text")
        if k not in tensors and k not in outputs:
            raise b.fail(f"formulas.{k}", f"{k!r} is neither a tensor nor an output")

    return Spec(
        name=name,
        description=description,
        dims=dims,
        options=options,
        inputs=groups["inputs"],
        params=groups["params"],
        outputs=outputs,
        reference=reference,
        implementation=implementation,
        tolerance=tolerance,
        formulas={k: v.rstrip() for k, v in formulas.items()},
        path=path,
        lines=b.lines,
    )


def _grad_names(outputs: tuple[str, ...]) -> list[str]:
    names = [f"grad_{o}" for o in outputs] + [f"d{o}" for o in outputs]
    if len(outputs) == 1:
        names += ["grad_out", "dout"]
    return names


def _check_names(b: _Builder, call: Call, known: set[str], key: str) -> None:
    for name in call.arg_names:
        if name not in known:
            raise b.fail(
                key, f"{call.func}() is handed {name!r}, which is not a known name{did_you_mean(name, known)}"
            )


# --------------------------------------------------------------------------
# Finding specs


# Directories a recursive search never enters (pytest's norecursedirs, plus venvs).
SKIP_DIRS = ("build", "dist", "node_modules", "venv", "site-packages", "__pycache__")


def _skipped(folder: Path) -> bool:
    name = folder.name
    return (
        name.startswith(".")
        or name in SKIP_DIRS
        or name.endswith((".egg", ".egg-info"))
        or (folder / "pyvenv.cfg").exists()
    )


def _walk(folder: Path) -> Iterable[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if not _skipped(entry):
                yield from _walk(entry)
        elif entry.suffix in (".yaml", ".yml") and looks_like_spec(entry):
            yield entry


def find_spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """Spec files among ``paths``: files as given, directories searched recursively
    (skipping hidden folders, virtual environments and build output); each file once."""
    found: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_dir():
            candidates = list(_walk(p))
        elif p.exists():
            candidates = [p]
        else:
            raise SpecError("no such file or directory", p)
        for f in candidates:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                found.append(f)
    return found
