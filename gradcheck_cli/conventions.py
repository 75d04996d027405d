"""Running the user's code in the convention it is written in, on copies.

Conventions (see the README's "Check your own backward"):

- functional: ``backward(grad_out, x, w) -> x, w`` returns the gradients;
- fastai: a backward without ``->``: ``out.g`` is set to the upstream
  gradient before the call and each tensor's ``.g`` is read after it;
- class: ``class: "Model(w1, b1)"`` builds an instance, forward/backward name
  its methods;
- numpy: ``backend: numpy`` hands numpy arrays and takes numpy arrays back;
- autograd_function: ``MyFunction.apply(...)``, then autograd's backward.

The user's code gets clones; the pristine values are kept to detect (and
report) any in-place modification, and to keep the reference side untouched.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import torch

from .calls import Call
from .errors import SpecError
from .spec import CodeSource, Spec

MISSING = object()  # a gradient that was never given (no .g, or a None slot)


class UserCodeError(Exception):
    """The checked code raised; carries the original exception and where it was."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        self.exc = exc
        self.where = user_frame(exc.__traceback__, exc)
        where = f" at {self.where}" if self.where else ""
        super().__init__(f"{stage} raised {type(exc).__name__}: {exc}{where}")


@contextmanager
def user_code(stage: str) -> Iterator[None]:
    """Run the checked code: whatever it raises (even SystemExit) becomes a UserCodeError."""
    try:
        yield
    except (Exception, SystemExit) as exc:
        raise UserCodeError(stage, exc) from exc


class ConventionError(Exception):
    """The checked code broke the calling convention (wrong count of returns...)."""


_TORCH_DIR = str(Path(torch.__file__).parent.resolve()) + os.sep
_OWN_FILES = {str(Path(__file__).resolve())}
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve()) + os.sep  # importlib's frames are not a place


def _is_library(filename: str) -> bool:
    """A frame of torch, numpy, an installed package, or Python's import machinery."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return True
    resolved = str(Path(filename).resolve())
    return (
        resolved.startswith((_TORCH_DIR, _STDLIB))
        or "site-packages" in resolved
        or "dist-packages" in resolved
    )


def user_frame(tb: TracebackType | None, exc: BaseException | None = None) -> str | None:
    """``file:line`` of the deepest traceback frame in the user's code.

    Frames in torch, numpy and other installed packages are skipped when a
    frame of the user's own files is there to point at; a SyntaxError points
    at the line it is about.
    """
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{exc.filename}:{exc.lineno}"
    deepest_user = deepest_any = None
    for frame, line in traceback.walk_tb(tb):
        filename = frame.f_code.co_filename
        if str(Path(filename).resolve()) in _OWN_FILES:
            continue
        where = f"{filename}:{line}"
        if not filename.startswith("<") and not str(Path(filename).resolve()).startswith(_STDLIB):
            deepest_any = where  # a library frame, when no frame of the user's is there
        if not _is_library(filename):
            deepest_user = where
    return deepest_user or deepest_any


def load_namespace(source: CodeSource, spec: Spec, key: str) -> Mapping[str, Any]:
    """Import the user's module or file; an import failure is a spec error."""
    if source.namespace is not None:
        return source.namespace
    try:
        if source.module is not None:
            module: ModuleType = _import_module(source.module, spec)
        else:
            assert source.file is not None
            module = _import_file(source.file)
    except SpecError:
        raise
    except BaseException as exc:  # noqa: BLE001 - any import failure is reported, not raised
        if isinstance(exc, KeyboardInterrupt):
            raise
        where = user_frame(exc.__traceback__, exc)
        at = f" (at {where})" if where else ""
        message = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
        raise spec.error(
            f"cannot import {source.describe()}: {type(exc).__name__}: {message}{at}",
            f"{key}.{'module' if source.module else 'file'}",
        ) from None
    return vars(module)


def _import_module(name: str, spec: Spec) -> ModuleType:
    """Import a dotted module the way ``python -m`` would see it from here: the
    current directory and the spec's folder are importable during the import."""
    extra = [str(Path.cwd())]
    if spec.path is not None:
        extra.append(str(spec.path.resolve().parent))
    added = [p for p in extra if p not in sys.path]
    sys.path[:0] = added
    try:
        return importlib.import_module(name)
    finally:
        for p in added:
            sys.path.remove(p)


_FILE_MODULES: dict[Path, tuple[str, ModuleType]] = {}


def _import_file(path: Path) -> ModuleType:
    """Execute a .py file as a module, again whenever its text has changed.

    Re-running after an edit (in a notebook, or after filling in a template)
    must run the new code: modules are cached by content, not by path, and no
    bytecode is written next to the user's file.
    """
    path = path.resolve()
    source = path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    cached = _FILE_MODULES.get(path)
    if cached is not None and cached[0] == digest:
        return cached[1]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"gradcheck_user_{stem}_{digest[:12]}"
    module = ModuleType(name)
    module.__file__ = str(path)
    code = compile(source, str(path), "exec", dont_inherit=True)
    # Let the file import its neighbours (a helper module next to it).
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(str(path.parent))
    _FILE_MODULES[path] = (digest, module)
    return module


def lookup(namespace: Mapping[str, Any], dotted: str, spec: Spec, key: str) -> Any:
    head, *rest = dotted.split(".")
    if head not in namespace:
        from .spec import did_you_mean

        public = [k for k in namespace if not k.startswith("_")]
        raise spec.error(f"{head!r} is not defined in the implementation{did_you_mean(head, public)}", key)
    return _walk_attrs(namespace[head], rest, dotted, spec, key)


def _walk_attrs(obj: Any, attrs: list[str], dotted: str, spec: Spec, key: str) -> Any:
    for attr in attrs:
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise spec.error(f"{dotted!r}: {type(obj).__name__} has no attribute {attr!r}", key) from None
    return obj


@dataclass
class Outcome:
    """What the checked code produced: outputs, gradients, what it modified."""

    outputs: dict[str, Any] = field(default_factory=dict)
    grads: dict[str, Any] = field(default_factory=dict)
    modified: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # tensor name -> what is wrong with its slot


def _copy(value: torch.Tensor, numpy: bool) -> Any:
    copy = value.detach().clone()
    return copy.cpu().numpy() if numpy else copy


def _same(pristine: torch.Tensor, handed: Any) -> bool:
    if isinstance(handed, torch.Tensor):
        current = handed.detach()
    else:
        current = torch.from_numpy(handed) if hasattr(handed, "__array__") else handed
    if not isinstance(current, torch.Tensor) or current.shape != pristine.shape:
        return False
    return bool(torch.equal(current.to(pristine.device, pristine.dtype), pristine))


def _snapshot_out(value: Any) -> Any:
    """Copy a returned output now: a later backward must not change what is compared."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if hasattr(value, "copy") and hasattr(value, "__array__"):
        return value.copy()
    return value


class Invoker:
    """Calls the user's functions with names resolved from one scope."""

    def __init__(self, spec: Spec, scope: dict[str, Any], target: Any = None) -> None:
        self.spec = spec
        self.scope = scope
        self.target = target  # a class instance, or None for module functions

    def resolve(self, call: Call, namespace: Mapping[str, Any], key: str) -> Callable[..., Any]:
        if self.target is not None:
            if call.func == "__call__":
                return self.target  # type: ignore[no-any-return]
            head, *rest = call.func.split(".")
            if not hasattr(self.target, head):
                from .spec import did_you_mean

                methods = [m for m in dir(self.target) if not m.startswith("_")]
                raise self.spec.error(
                    f"{type(self.target).__name__} has no method {head!r}{did_you_mean(head, methods)}", key
                )
            func = _walk_attrs(getattr(self.target, head), rest, call.func, self.spec, key)
        else:
            func = lookup(namespace, call.func, self.spec, key)
        if not callable(func):
            raise self.spec.error(f"{call.func!r} is not callable", key)
        return func  # type: ignore[no-any-return]

    def label(self, call: Call) -> str:
        """How a message names the call: ``lin_grad()``, ``Model.backward()``, ``Model()``."""
        if self.target is None:
            return f"{call.func}()"
        cls = type(self.target).__name__
        return f"{cls}()" if call.func == "__call__" else f"{cls}.{call.func}()"

    def __call__(self, stage: str, call: Call, func: Callable[..., Any]) -> Any:
        args, kwargs = [], {}
        for arg in call.args:
            value = self.scope[arg.name] if arg.name is not None else arg.literal
            if arg.keyword:
                kwargs[arg.keyword] = value
            else:
                args.append(value)
        with user_code(stage):
            return func(*args, **kwargs)


def _unpack(call: Call, returned: Any) -> dict[str, Any]:
    """Bind return slots to names; a single slot takes the value whole."""
    assert call.returns is not None
    slots = call.returns
    if len(slots) == 1:
        values = [returned]
    else:
        if not isinstance(returned, (tuple, list)):
            raise ConventionError(
                f"{call.func}() returned {_kind(returned)}, expected {len(slots)} values ({', '.join(slots)})"
            )
        if len(returned) != len(slots):
            raise ConventionError(
                f"{call.func}() returned {len(returned)} values, expected {len(slots)} ({', '.join(slots)})"
            )
        values = list(returned)
    return {name: value for name, value in zip(slots, values) if name != "_"}


def _kind(value: Any) -> str:
    return "None" if value is None else f"a {type(value).__name__}"


def run_implementation(
    spec: Spec,
    values: Mapping[str, torch.Tensor],
    grad_outs: Mapping[str, torch.Tensor],
    dims: Mapping[str, int],
) -> Outcome:
    """Run the hand-written forward/backward on copies of ``values``.

    ``values`` are the pristine inputs and params, ``grad_outs`` the upstream
    gradient per output: neither is ever handed to the user's code, which gets
    clones (numpy arrays with ``backend: numpy``) and a deep copy of the
    options. Raises :class:`UserCodeError` when the code raises,
    :class:`ConventionError` when it returns the wrong things.
    """
    impl = spec.implementation
    numpy = impl.backend == "numpy"
    namespace = load_namespace(impl.source, spec, "implementation")
    handed = {name: _copy(v, numpy) for name, v in values.items()}
    handed_grads = {out: _copy(g, numpy) for out, g in grad_outs.items()}
    scope: dict[str, Any] = {**copy.deepcopy(spec.options), **dims, **handed}
    for alias, out in spec.grad_names().items():
        scope[alias] = handed_grads[out]
    outcome = Outcome()

    if impl.autograd_function:
        _run_autograd_function(spec, namespace, scope, handed, handed_grads, outcome)
    else:
        _run_calls(spec, namespace, scope, handed, handed_grads, outcome)

    for name, pristine in values.items():
        if not _same(pristine, handed[name]):
            outcome.modified.append(name)
    for out, pristine in grad_outs.items():
        if not _same(pristine, handed_grads[out]):
            outcome.modified.append(f"grad_{out}")
    return outcome


def _run_calls(
    spec: Spec,
    namespace: Mapping[str, Any],
    scope: dict[str, Any],
    handed: dict[str, Any],
    handed_grads: dict[str, Any],
    outcome: Outcome,
) -> None:
    """functional, fastai, class and numpy: the spec's class/forward/backward calls."""
    impl = spec.implementation
    invoker = Invoker(spec, scope)
    if impl.cls is not None:
        cls = invoker.resolve(impl.cls, namespace, "implementation.class")
        invoker.target = invoker(f"class {impl.cls.func}()", impl.cls, cls)
    # Which name in scope holds each output (the forward's return slot for it).
    out_slots: dict[str, str] = {}
    if impl.forward is not None:
        fwd = impl.forward
        func = invoker.resolve(fwd, namespace, "implementation.forward")
        bound = _unpack(fwd, invoker(f"forward {invoker.label(fwd)}", fwd, func))
        scope.update(bound)
        if any(o in bound for o in spec.outputs):
            out_slots = {o: o for o in spec.outputs if o in bound}
        else:  # outputs not named in the returns: the first slots are the outputs
            slots = [r for r in (fwd.returns or ()) if r != "_"][: len(spec.outputs)]
            out_slots = dict(zip(spec.outputs, slots, strict=False))
        outcome.outputs = {o: _snapshot_out(bound[slot]) for o, slot in out_slots.items()}
    assert impl.backward is not None
    bwd = impl.backward
    func = invoker.resolve(bwd, namespace, "implementation.backward")
    stage = f"backward {invoker.label(bwd)}"
    if bwd.returns is None:  # fastai: out.g in, tensor.g out
        if not out_slots:
            raise spec.error(
                "a backward without '->' reads the upstream gradient from out.g, but no forward"
                " returns the output to set it on: add 'forward: \"...(...) -> out\"'",
                "implementation.backward",
            )
        for out, slot in out_slots.items():
            target = scope.get(slot)
            if isinstance(target, torch.Tensor):
                target.g = handed_grads[out]  # type: ignore[attr-defined]
        returned = invoker(stage, bwd, func)
        for t in spec.checked:
            grad = getattr(handed[t.name], "g", None)
            outcome.grads[t.name] = MISSING if grad is None else grad
            if grad is None:
                problem = f"{bwd.func}() did not set {t.name}.g"
                if returned is not None:
                    problem += (
                        f"; it returned {_kind(returned)}: if it returns the gradients,"
                        f" name them in the spec: '{bwd.text} -> {', '.join(c.name for c in spec.checked)}'"
                    )
                outcome.problems[t.name] = problem
    else:
        returned = invoker(stage, bwd, func)
        for name, value in _unpack(bwd, returned).items():
            outcome.grads[name] = MISSING if value is None else value
            if value is None:
                outcome.problems[name] = f"{bwd.func}() returned None for {name}"
        for t in spec.checked:
            if t.name not in outcome.grads:
                outcome.grads[t.name] = MISSING
                outcome.problems.setdefault(t.name, f"no return slot of {bwd.func}() is named {t.name!r}")


def _run_autograd_function(
    spec: Spec,
    namespace: Mapping[str, Any],
    scope: dict[str, Any],
    handed: dict[str, Any],
    handed_grads: dict[str, Any],
    outcome: Outcome,
) -> None:
    """``Function.apply(*args)`` on leaves that require grad, then autograd's backward."""
    impl = spec.implementation
    assert impl.autograd_function is not None and impl.args is not None
    name = impl.autograd_function
    fn = lookup(namespace, name, spec, "implementation.autograd_function")
    if not hasattr(fn, "apply"):
        raise spec.error(
            f"{name!r} has no .apply: is it a torch.autograd.Function?", "implementation.autograd_function"
        )
    for t in spec.checked:
        handed[t.name].requires_grad_(True)
    scope.update({t.name: handed[t.name] for t in spec.checked})
    with user_code(f"forward {name}.apply()"):
        result = fn.apply(*(scope[a] for a in impl.args))
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(results) != len(spec.outputs):
        raise ConventionError(
            f"{name}.apply returned {len(results)} values, expected {len(spec.outputs)}"
            f" ({', '.join(spec.outputs)})"
        )
    outcome.outputs = {o: _snapshot_out(r) for o, r in zip(spec.outputs, results, strict=True)}
    pairs = [
        (r, handed_grads[o])
        for o, r in zip(spec.outputs, results, strict=True)
        if isinstance(r, torch.Tensor) and r.requires_grad
    ]
    if not pairs:
        raise ConventionError(f"the output of {name}.apply does not require grad: is its backward reachable?")
    try:
        with user_code(f"backward {name}.backward()"):
            torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])
    except UserCodeError as exc:
        _name_gradient_index(exc, impl.args)
        raise
    for t in spec.checked:
        grad = handed[t.name].grad
        outcome.grads[t.name] = MISSING if grad is None else grad
        if grad is None:
            outcome.problems[t.name] = f"{name}.backward returned None for {t.name}"
        handed[t.name] = handed[t.name].detach()


def _name_gradient_index(exc: UserCodeError, args: tuple[str, ...]) -> None:
    """torch says "invalid gradient at index 1": say which argument that is."""
    found = re.search(r"at index (\d+)", str(exc.exc))
    if found and int(found.group(1)) < len(args):
        exc.args = (f"{exc.args[0]} (index {found.group(1)} is {args[int(found.group(1))]})",)
