"""What an expression may reach: namespaces and attributes, by an explicit allowlist.

The names come from :mod:`.allowlist`; this module applies them twice: to the
text of an expression when it is parsed (``torch.utils`` is refused by name,
before anything runs) and to the values met while it is evaluated (a
tensor's attributes, a size's, a dtype's; nothing of a string or of an
object the allowlist does not know).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from . import allowlist
from .names import did_you_mean

# The names a spec expression finds without declaring them.
GLOBALS = ("torch", "F", "math")


class ReachError(ValueError):
    """An attribute or namespace the allowlist does not let an expression reach."""


# Namespaces by the dotted path they are reached at, and what each lets through.
NAMESPACES: dict[str, frozenset[str]] = {
    "torch": allowlist.TORCH | {"nn", "linalg", "special", "fft"},
    "torch.nn": frozenset({"functional"}),
    "torch.nn.functional": allowlist.FUNCTIONAL,
    "torch.linalg": allowlist.LINALG,
    "torch.special": allowlist.SPECIAL,
    "torch.fft": allowlist.FFT,
    "math": allowlist.MATH,
}
_GLOBAL_PATHS = {"torch": "torch", "F": "torch.nn.functional", "math": "math"}
# Attributes of plain values (not tensors, not namespaces), by type name.
VALUE_ATTRIBUTES: dict[str, frozenset[str]] = {
    "Size": frozenset({"numel"}),
    "dtype": frozenset({"is_floating_point", "is_complex", "is_signed", "itemsize"}),
    "device": frozenset({"type", "index"}),
    "finfo": frozenset({"bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution", "dtype"}),
    "iinfo": frozenset({"bits", "max", "min", "dtype"}),
    "int": frozenset({"real", "imag", "bit_length"}),
    "float": frozenset({"real", "imag", "is_integer"}),
    "complex": frozenset({"real", "imag", "conjugate"}),
    "dict": frozenset({"get", "keys", "values", "items"}),
}
_ANY_VALUE_ATTRIBUTE = allowlist.TENSOR.union(*VALUE_ATTRIBUTES.values())


def static_path(node: ast.AST) -> str | None:
    """``torch.nn.functional`` for a chain of attributes on a global name, else None."""
    if isinstance(node, ast.Name):
        return _GLOBAL_PATHS.get(node.id.removeprefix("_kw_"))
    if isinstance(node, ast.Attribute):
        base = static_path(node.value)
        if base is not None and base in NAMESPACES and node.attr in NAMESPACES[base]:
            candidate = f"{base}.{node.attr}"
            return candidate if candidate in NAMESPACES else None
    return None


def check_attribute(node: ast.Attribute) -> None:
    attr = node.attr
    if attr.startswith("_"):
        raise ReachError(f"attribute {attr!r} is not allowed (no underscore attributes)")
    base = static_path(node.value)
    if base is not None:
        _namespace_attribute(base, attr)
    elif isinstance(node.value, ast.Constant) and not isinstance(node.value.value, (int, float, complex)):
        raise ReachError(f"attribute {attr!r} of {node.value.value!r} is not allowed in an expression")
    elif attr not in _ANY_VALUE_ATTRIBUTE:
        raise ReachError(f"attribute {attr!r} is not allowed in an expression{_near(attr)}")


def _near(attr: str) -> str:
    return did_you_mean(attr, _ANY_VALUE_ATTRIBUTE, cutoff=0.8)


def _namespace_attribute(path: str, attr: str) -> None:
    if attr not in NAMESPACES[path]:
        shown = {"torch.nn.functional": "F"}.get(path, path)
        raise ReachError(
            f"attribute {attr!r} is not allowed here: {shown}.{attr} is not a tensor function"
            f"{did_you_mean(attr, NAMESPACES[path], cutoff=0.8)} (only the tensor functions of torch, F,"
            " torch.linalg, torch.special, torch.fft and math are in reach of a spec expression)"
        )


class Namespace:
    """A module seen through its allowlist."""

    def __init__(self, path: str, module: ModuleType) -> None:
        self.path, self.module = path, module

    def get(self, attr: str) -> Any:
        _namespace_attribute(self.path, attr)
        sub = f"{self.path}.{attr}"
        if sub in NAMESPACES:
            return Namespace(sub, getattr(self.module, attr))
        try:
            value = getattr(self.module, attr)
        except AttributeError:
            raise ReachError(f"{self.path}.{attr} does not exist in this torch") from None
        if isinstance(value, ModuleType):
            raise ReachError(f"{self.path}.{attr} is a module: not in reach of an expression")
        return value


def namespaces() -> dict[str, Any]:
    import math

    import torch

    return {
        "torch": Namespace("torch", torch),
        "F": Namespace("torch.nn.functional", torch.nn.functional),
        "math": Namespace("math", math),
    }


def _value_attributes(value: Any) -> Iterable[str]:
    """The attributes an expression may read on this value, by its exact type."""
    import torch

    if isinstance(value, torch.Tensor):
        return allowlist.TENSOR
    kind = type(value)
    if kind.__module__ == "torch.return_types":  # max(...).values, .indices
        return getattr(kind, "__match_args__", ())
    known = {
        torch.Size: "Size",
        torch.dtype: "dtype",
        torch.device: "device",
        torch.finfo: "finfo",
        torch.iinfo: "iinfo",
        int: "int",
        float: "float",
        complex: "complex",
        dict: "dict",
    }
    return VALUE_ATTRIBUTES.get(known.get(kind, ""), ())


def value_attribute(value: Any, attr: str) -> Any:
    """``value.attr``, when the allowlist lets an expression read it."""
    if attr.startswith("_"):
        raise ReachError(f"attribute {attr!r} is not allowed (no underscore attributes)")
    if isinstance(value, Namespace):
        return value.get(attr)
    if attr not in _value_attributes(value):
        raise ReachError(f"attribute {attr!r} of a {type(value).__name__} is not allowed in an expression")
    result = getattr(value, attr)
    if isinstance(result, ModuleType):
        raise ReachError(f"{attr!r} is a module: not in reach of an expression")
    return result
