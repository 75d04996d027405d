"""Write gradcheck_cli/allowlist.py: what a spec expression may reach in torch, F and math.

    python scripts/generate_allowlist.py

The written file is the allowlist itself, committed and reviewed: spec
expressions reach exactly the names it lists, whatever the installed torch
has besides. This script only drafts it from torch's own tensor-function
tables (``torch._C._VariableFunctions``, ``torch.functional.__all__``, the
public functions of ``torch.nn.functional``, ``torch.linalg``,
``torch.special`` and ``torch.fft``) and the public attributes of
``torch.Tensor``, leaving out what is not about tensor values: backend- and
quantization-specific kernels, reading files, hooks, storages and other
handles that lead out of the tensor.
"""

from __future__ import annotations

import math
import re
import types
from pathlib import Path

import torch
import torch.functional
import torch.nn.functional as F

OUT = Path(__file__).resolve().parent.parent / "gradcheck_cli" / "allowlist.py"

# Kernels of one backend, quantized and sparse constructors, symbolic-shape helpers, file reading;
# uninitialised memory (``empty*``: whatever the allocator last held, so no two runs agree) and
# tensors over a Python buffer (``frombuffer``, ``asarray``: writing one writes an immutable
# ``bytes`` object, corrupting the interpreter).
NOT_MATH = re.compile(
    r"^(cudnn_|miopen_|mkldnn_|fbgemm_|quantize|quantized_|fake_quantize|dequantize|empty"
    r"|sparse_|resize_as_sparse_|sym_|from_file$|frombuffer$|asarray$|is_vulkan|is_nonzero$|set_)"
)
# Tensor attributes that lead out of the tensor's values: storage and memory handles, hooks,
# the autograd graph, interop capsules, in-place application of arbitrary Python callables.
TENSOR_EXCLUDED = {
    "storage",
    "untyped_storage",
    "storage_type",
    "share_memory_",
    "is_shared",
    "pin_memory",
    "data_ptr",
    "const_data_ptr",
    "mutable_data_ptr",
    "new_empty",
    "new_empty_strided",
    "register_hook",
    "register_post_accumulate_grad_hook",
    "retain_grad",
    "backward",
    "grad_fn",
    "apply_",
    "map_",
    "map2_",
    "to_dlpack",
    "module_load",
    "new",
    "type",
    "numpy",
    "set_",
    "resize_",
    "resize_as_",
    "record_stream",
    "dim_order",
    "to_sparse",
    "to_mkldnn",
    "is_pinned",
}
TYPING = {"Callable", "DType", "Optional", "Tensor", "List", "Tuple", "Union", "Any", "TYPE_CHECKING"}
# torch's own dispatch machinery: it calls whatever it is handed.
DISPATCH = {
    "boolean_dispatch",
    "handle_torch_function",
    "has_torch_function",
    "has_torch_function_unary",
    "has_torch_function_variadic",
    "assert_int_or_pair",
}


def _functions(module: types.ModuleType) -> set[str]:
    names = set()
    for name in dir(module):
        if name.startswith("_") or name in TYPING | DISPATCH or NOT_MATH.match(name):
            continue
        value = getattr(module, name)
        if callable(value) and not isinstance(value, (type, types.ModuleType)):
            names.add(name)
    return names


def torch_names() -> set[str]:
    names = {n for n in dir(torch._C._VariableFunctions) if not n.startswith("_") and not NOT_MATH.match(n)}
    names |= set(torch.functional.__all__)
    names |= {n for n in dir(torch) if isinstance(getattr(torch, n, None), torch.dtype)}
    names |= {"pi", "e", "inf", "nan", "finfo", "iinfo", "is_tensor", "is_floating_point", "is_complex"}
    names |= {"get_default_dtype", "broadcast_shapes", "unravel_index"}
    return names


def tensor_names() -> set[str]:
    return {n for n in dir(torch.Tensor) if not n.startswith("_") and n not in TENSOR_EXCLUDED}


def _block(name: str, doc: str, values: set[str]) -> str:
    lines = [f"# {doc}", f"{name}: frozenset[str] = frozenset(", "    {"]
    for value in sorted(values):
        lines.append(f'        "{value}",')
    lines += ["    }", ")", ""]
    return "\n".join(lines)


def main() -> None:
    math_names = {n for n in dir(math) if not n.startswith("_")}
    parts = [
        '"""What a spec expression may reach: an explicit allowlist, per namespace.',
        "",
        "Drafted by scripts/generate_allowlist.py from torch " + torch.__version__.split("+")[0] + ",",
        "then committed: a name absent here is refused, whatever the installed torch has.",
        "(A name listed here but missing from an older torch is simply not found.)",
        "Long by nature: data, one name a line.",
        '"""',
        "",
        "# fmt: off",
        "",
        _block("TORCH", "torch.*: tensor functions, dtypes and constants.", torch_names()),
        _block("FUNCTIONAL", "torch.nn.functional.* (F.*).", _functions(F)),
        _block("LINALG", "torch.linalg.*", _functions(torch.linalg)),
        _block("SPECIAL", "torch.special.*", _functions(torch.special)),
        _block("FFT", "torch.fft.*", _functions(torch.fft)),
        _block("MATH", "math.*", math_names),
        _block("TENSOR", "Attributes and methods of a tensor.", tensor_names()),
        "# fmt: on",
        "",
    ]
    OUT.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
