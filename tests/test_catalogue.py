"""The built-in catalogue: every layer passes, in float64 and float32, under --sweep."""

from __future__ import annotations

import json
import runpy

import pytest

from gradcheck_cli import check
from gradcheck_cli.catalogue import builtin_dir
from gradcheck_cli.spec import load_spec

from .conftest import REPO

CATALOGUE = [
    "linear", "lin", "relu", "leaky_relu", "gelu", "sigmoid", "tanh", "softmax", "log_softmax", "logsumexp",
    "mse", "cross_entropy", "nll_loss", "binary_cross_entropy_with_logits", "conv1d", "conv2d", "max_pool2d",
    "avg_pool2d", "batch_norm", "layer_norm", "embedding", "dropout", "scaled_dot_product_attention",
    "multi_head_attention", "rnn_cell", "lstm_cell", "mlp",
]  # fmt: skip


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("name", CATALOGUE)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_layer_passes_on_its_defaults(name, dtype):
    report = check(builtin_dir() / f"{name}.yaml", dtype=dtype)
    assert report.ok, report.render()


@pytest.mark.parametrize("name", CATALOGUE)
def test_layer_passes_under_sweep(name):
    report = check(builtin_dir() / f"{name}.yaml", sweep=True)
    assert report.ok, report.render()
    assert len(report.results[0].sweep) >= 3  # other sizes and seeds really ran


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", CATALOGUE)
def test_layer_passes_on_cuda(name):
    report = check(builtin_dir() / f"{name}.yaml", device="cuda", dtype="float32")
    assert report.ok, report.render()


@pytest.mark.parametrize("name", CATALOGUE)
def test_layer_spec_is_studyable(name):
    spec = load_spec(builtin_dir() / f"{name}.yaml")
    assert spec.name == name
    assert spec.description
    assert spec.implementation.forward is not None, "built-ins check their forward too"
    # --explain has a derivation for every output and every checked tensor
    assert set(spec.formulas) >= {t.name for t in spec.checked} | set(spec.outputs)
    # no two dims of the same size by default: a transpose cannot hide behind a square shape
    sizes = [v for v in spec.dims.values() if v > 1]
    assert len(sizes) == len(set(sizes)), spec.dims


def test_run_layer_specs_passes_all(gradcheck):
    ran = gradcheck("run", str(REPO / "layer_specs"))
    assert ran.exit_code == 0, ran.stdout
    assert ran.stdout.splitlines()[-1] == f"PASS: {len(CATALOGUE)} passed"


def test_run_builtin_is_the_catalogue(gradcheck):
    ran = gradcheck("run", "--builtin", "--format", "json")
    assert ran.exit_code == 0
    assert sorted(r["spec"] for r in json.loads(ran.stdout)["results"]) == sorted(CATALOGUE)


def test_list_shows_every_layer_with_dims_and_description(gradcheck):
    listed = {row["name"]: row for row in json.loads(gradcheck("list", "--format", "json").stdout)}
    assert set(CATALOGUE) <= set(listed)
    assert all(listed[n]["description"] and listed[n]["dims"] for n in CATALOGUE)
    table = gradcheck("list").stdout
    assert all(any(line.startswith(n + " ") for line in table.splitlines()) for n in CATALOGUE)


def test_docs_layers_md_is_current():
    generator = runpy.run_path(str(REPO / "scripts" / "generate_layers_doc.py"))
    current = (REPO / "docs" / "layers.md").read_text(encoding="utf-8")
    assert current == generator["render"](), "run: python scripts/generate_layers_doc.py"


def test_every_layer_has_an_explain(gradcheck):
    for name in ("conv2d", "lstm_cell", "mlp"):
        ran = gradcheck(name, "--explain")
        assert ran.exit_code == 0 and ran.stdout.count("\n") > 5


def test_gelu_tanh_approximation_passes_too(gradcheck):
    ran = gradcheck("gelu", "--option", "approximate=tanh", "--format", "json")
    assert ran.exit_code == 0
    assert json.loads(ran.stdout)["results"][0]["notes"] == ["options set: approximate='tanh'"]
