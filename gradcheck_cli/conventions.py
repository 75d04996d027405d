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

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Mapping
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
        self.where = user_frame(exc.__traceback__)
        where = f" at {self.where}" if self.where else ""
        super().__init__(f"{stage} raised {type(exc).__name__}: {exc}{where}")


class ConventionError(Exception):
    """The checked code broke the calling convention (wrong count of returns...)."""


_TORCH_DIR = str(Path(torch.__file__).parent.resolve()) + os.sep
_OWN_FILES = {str(Path(__file__).resolve())}


def user_frame(tb: TracebackType | None) -> str | None:
    """``file:line`` of the deepest traceback frame in the user's code."""
    where = None
    for frame, line in traceback.walk_tb(tb):
        filename = str(Path(frame.f_code.co_filename).resolve())
        if filename.startswith(_TORCH_DIR) or filename in _OWN_FILES:
            continue
        if "site-packages" in filename and f"{os.sep}numpy{os.sep}" in filename:
            continue
        where = f"{frame.f_code.co_filename}:{line}"
    return where


def load_namespace(source: CodeSource, spec: Spec, key: str) -> Mapping[str, Any]:
    """Import the user's module or file; an import failure is a spec error."""
    if source.namespace is not None:
        return source.namespace
    try:
        if source.module is not None:
            module: ModuleType = importlib.import_module(source.module)
        else:
            assert source.file is not None
            module = _import_file(source.file)
    except SpecError:
        raise
    except BaseException as exc:  # noqa: BLE001 - any import failure is reported, not raised
        if isinstance(exc, KeyboardInterrupt):
            raise
        where = user_frame(exc.__traceback__)
        at = f" (at {where})" if where else ""
        raise spec.error(
            f"cannot import {source.describe()}: {type(exc).__name__}: {exc}{at}", f"{key}.{'module' if source.module else 'file'}"
        ) from None
    return vars(module)


def _import_file(path: Path) -> ModuleType:
    path = path.resolve()
    name = f"gradcheck_user_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    # Let the file import its neighbours (a helper module next to it).
    sys.path.insert(0, str(path.parent))
    try:
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


def lookup(namespace: Mapping[str, Any], dotted: str, spec: Spec, key: str) -> Any:
    head, *rest = dotted.split(".")
    if head not in namespace:
        from .spec import did_you_mean

        public = [k for k in namespace if not k.startswith("_")]
        raise spec.error(f"{head!r} is not defined in the implementation{did_you_mean(head, public)}", key)
    obj = namespace[head]
    for attr in rest:
        obj = getattr(obj, attr)
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
            if not hasattr(self.target, call.func):
                raise self.spec.error(f"{type(self.target).__name__} has no method {call.func!r}", key)
            return getattr(self.target, call.func)  # type: ignore[no-any-return]
        func = lookup(namespace, call.func, self.spec, key)
        if not callable(func):
            raise self.spec.error(f"{call.func!r} is not callable", key)
        return func  # type: ignore[no-any-return]

    def __call__(self, stage: str, call: Call, func: Callable[..., Any]) -> Any:
        args, kwargs = [], {}
        for arg in call.args:
            value = self.scope[arg.name] if arg.name is not None else arg.literal
            if arg.keyword:
                kwargs[arg.keyword] = value
            else:
                args.append(value)
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            raise UserCodeError(stage, exc) from exc


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
    gradient per output. Raises :class:`UserCodeError` when the code raises,
    :class:`ConventionError` when it returns the wrong things.
    """
    impl = spec.implementation
    numpy = impl.backend == "numpy"
    namespace = load_namespace(impl.source, spec, "implementation")
    handed = {name: _copy(v, numpy) for name, v in values.items()}
    handed_grads = {out: _copy(g, numpy) for out, g in grad_outs.items()}
    scope: dict[str, Any] = {**spec.options, **dims, **handed}
    for alias, out in spec.grad_names().items():
        scope[alias] = handed_grads[out]
    outcome = Outcome()

    if impl.autograd_function:
        _run_autograd_function(spec, namespace, scope, handed, handed_grads, outcome)
    else:
        invoker = Invoker(spec, scope)
        if impl.cls is not None:
            cls = invoker.resolve(impl.cls, namespace, "implementation.class")
            invoker.target = invoker("class " + impl.cls.func, impl.cls, cls)
        if impl.forward is not None:
            fwd = impl.forward
            func = invoker.resolve(fwd, namespace, "implementation.forward")
            bound = _unpack(fwd, invoker("forward", fwd, func))
            scope.update(bound)
            named = [o for o in spec.outputs if o in bound]
            if not named:  # outputs not named in the returns: take the first slots
                named_slots = [r for r in (fwd.returns or ()) if r != "_"][: len(spec.outputs)]
                outcome.outputs = {o: _snapshot_out(bound[s]) for o, s in zip(spec.outputs, named_slots)}
            else:
                outcome.outputs = {o: _snapshot_out(bound[o]) for o in named}
        assert impl.backward is not None
        bwd = impl.backward
        func = invoker.resolve(bwd, namespace, "implementation.backward")
        if bwd.returns is None:  # fastai: out.g in, tensor.g out
            for out in spec.outputs:
                target = scope.get(out)
                if isinstance(target, torch.Tensor):
                    target.g = handed_grads[out]  # type: ignore[attr-defined]
            invoker("backward", bwd, func)
            for t in spec.checked:
                outcome.grads[t.name] = getattr(handed[t.name], "g", MISSING)
        else:
            returned = invoker("backward", bwd, func)
            for name, value in _unpack(bwd, returned).items():
                outcome.grads[name] = MISSING if value is None else value
                if value is None:
                    outcome.problems[name] = f"{bwd.func}() returned None for {name}"
            for t in spec.checked:
                if t.name not in outcome.grads:
                    outcome.grads[t.name] = MISSING
                    outcome.problems.setdefault(t.name, f"no return slot of {bwd.func}() is named {t.name!r}")

    for name, pristine in values.items():
        if not _same(pristine, handed[name]):
            outcome.modified.append(name)
    for out, pristine in grad_outs.items():
        if not _same(pristine, handed_grads[out]):
            outcome.modified.append(f"grad_{out}")
    return outcome


def _run_autograd_function(
    spec: Spec,
    namespace: Mapping[str, Any],
    scope: dict[str, Any],
    handed: dict[str, Any],
    handed_grads: dict[str, Any],
    outcome: Outcome,
) -> None:
    impl = spec.implementation
    assert impl.autograd_function is not None and impl.args is not None
    fn = lookup(namespace, impl.autograd_function, spec, "implementation.autograd_function")
    if not hasattr(fn, "apply"):
        raise spec.error(f"{impl.autograd_function!r} has no .apply: is it a torch.autograd.Function?", "implementation.autograd_function")
    for t in spec.checked:
        handed[t.name].requires_grad_(True)
    try:
        result = fn.apply(*(scope[a] for a in impl.args))
    except Exception as exc:
        raise UserCodeError("forward", exc) from exc
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(results) != len(spec.outputs):
        raise ConventionError(
            f"{impl.autograd_function}.apply returned {len(results)} values, expected {len(spec.outputs)} ({', '.join(spec.outputs)})"
        )
    outcome.outputs = {o: _snapshot_out(r) for o, r in zip(spec.outputs, results)}
    pairs = [(r, handed_grads[o]) for o, r in zip(spec.outputs, results) if isinstance(r, torch.Tensor) and r.requires_grad]
    if not pairs:
        raise ConventionError(f"the output of {impl.autograd_function}.apply does not require grad")
    try:
        torch.autograd.backward([p[0] for p in pairs], [p[1] for p in pairs])
    except Exception as exc:
        raise UserCodeError("backward", exc) from exc
    for t in spec.checked:
        grad = handed[t.name].grad
        outcome.grads[t.name] = MISSING if grad is None else grad
        if grad is None:
            outcome.problems[t.name] = f"{impl.autograd_function}.backward returned None for {t.name}"
    for t in spec.checked:
        handed[t.name] = handed[t.name].detach()
