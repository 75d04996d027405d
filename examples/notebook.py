# %% [markdown]
# # Checking a backward from a notebook (or a test)
#
# `gradcheck_cli.check` is the engine behind the `gradcheck` command, as a
# function: it returns a report instead of printing one and exiting. Open this
# file in Jupyter (it is in jupytext's "percent" format) or run it with
# `python examples/notebook.py`.

# %%
from pathlib import Path

import torch

from gradcheck_cli import SpecError, check

# This folder: where the file is, or (in Jupyter, which has no __file__) the working
# directory when Jupyter was started here in examples/, or examples/ below it.
HERE = (
    Path(__file__).parent
    if "__file__" in globals()
    else next(p for p in (Path.cwd(), Path.cwd() / "examples") if (p / "fastai" / "lin.yaml").is_file())
)

# %% [markdown]
# ## No YAML: hand it your functions
# The fast.ai lesson's `lin_grad`, as it is in your notebook. The reference is
# a plain PyTorch function; its parameter names are the tensor names, and
# `shapes` gives each tensor's shape. `lin_grad`'s first parameter is called
# `inp`: a name that is not a tensor takes the next tensor not named (`x`).


# %%
def lin_grad(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g.sum(0)


report = check(
    reference=lambda x, w, b: x @ w + b,
    backward=lin_grad,
    convention="fastai",
    shapes={"x": (5, 3), "w": (3, 4), "b": (4,)},
)
report  # noqa: B018 - in Jupyter, the last expression shows the same table as the terminal

# %% [markdown]
# The report is data you can assert on, in a notebook cell or in a test:

# %%
assert report.ok
assert report["b"].status == "pass"
assert [c.name for c in report.results[0].checks] == ["x", "w", "b"]  # no forward given: no out row

# %% [markdown]
# ## A wrong backward
# Forget that `b` was broadcast over the rows, and the report says so:


# %%
def lin_grad_wrong(inp, out, w, b):
    inp.g = out.g @ w.t()
    w.g = inp.t() @ out.g
    b.g = out.g  # should be out.g.sum(0)


report = check(
    reference=lambda x, w, b: x @ w + b,
    backward=lin_grad_wrong,
    convention="fastai",
    shapes={"x": (5, 3), "w": (3, 4), "b": (4,)},
)
print(report)
assert not report.ok
assert report["b"].status == "shape_error"
assert report["b"].diagnosis == "missing_reduction"

# %% [markdown]
# ## A functional backward that returns its gradients
# Parameters named like the tensors, plus the upstream gradient (`grad_out`,
# `dout`, `grad_output` or `dy`); the gradients come back in the order of the
# tensor parameters.


# %%
def linear_backward(grad_output, x, weight, bias):
    return grad_output @ weight, grad_output.T @ x, grad_output.sum(0)


report = check(
    reference=lambda x, weight, bias: torch.nn.functional.linear(x, weight, bias),
    backward=linear_backward,
    shapes={"x": (5, 3)},
    params={"weight": (4, 3), "bias": (4,)},
    dtype="float32",
)
assert report.ok, report

# %% [markdown]
# ## From a spec file
# Everything the command line does: dims as keywords, dtype, seed, sweep.

# %%
report = check(HERE / "fastai" / "lin.yaml", n=7)
assert report.ok and report.results[0].dims["n"] == 7
report = check(HERE / "cs231n" / "affine.yaml", sweep=True)
assert report.ok

# %% [markdown]
# A spec that cannot run raises `SpecError`; it never exits the kernel:

# %%
try:
    check(HERE / "fastai" / "lin.yaml", batch=7)  # lin.yaml's dims are n, in, out
except SpecError as exc:
    print("SpecError:", exc)
else:
    raise AssertionError("an unknown dim must raise SpecError")
