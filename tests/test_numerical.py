"""Finite differences of a forward: correct gradients agree, wrong ones disagree at the right
elements, kinks are flagged instead of failed, sampling is seeded, vmap falls back to a loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradcheck_cli.numerical import (
    ForwardError,
    Numerical,
    NumericalError,
    TensorNumerical,
    comparison,
    numerical_vjp,
)

ATOL = RTOL = 1e-7  # the float64 tolerance of the analytic mode
Values = dict[str, torch.Tensor]
Forward = Callable[[Mapping[str, torch.Tensor]], Mapping[str, Any]]


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def autograd(forward: Forward, values: Values, grad_outs: Values, names: list[str]) -> Values:
    """The analytic gradients, by torch autograd: what a correct backward returns."""
    leaves = {k: v.clone().requires_grad_(k in names) for k, v in values.items()}
    outs = forward(leaves)
    loss = sum((outs[k] * g).sum() for k, g in grad_outs.items())
    grads = torch.autograd.grad(loss, [leaves[k] for k in names])
    return dict(zip(names, grads))


def mismatched(analytic: torch.Tensor, numerical: TensorNumerical) -> set[tuple[int, ...]]:
    """The elements the comparison fails, as index tuples."""
    cmp = comparison(analytic, numerical)
    close, _ = cmp.close(ATOL, RTOL)
    return {
        tuple(int(i) for i in torch.unravel_index(cmp.index[k], cmp.shape)) for k in (~close).nonzero()[:, 0]
    }


def check(
    forward: Forward, values: Values, grad_outs: Values, names: list[str], **options: Any
) -> tuple[Numerical, Values]:
    return numerical_vjp(forward, values, grad_outs, names, **options), autograd(
        forward, values, grad_outs, names
    )


def linear(v: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"out": v["x"] @ v["weight"].T + v["bias"]}


LINEAR = {"x": randn(5, 3, seed=1), "weight": randn(4, 3, seed=2), "bias": randn(4, seed=3)}
LINEAR_G = {"out": randn(5, 4, seed=4)}


# --- correct gradients agree ---------------------------------------------------------------------


def test_a_linear_layers_gradients_agree_in_every_element() -> None:
    num, grads = check(linear, LINEAR, LINEAR_G, ["x", "weight", "bias"], samples=None)
    for name in ("x", "weight", "bias"):
        t = num[name]
        assert mismatched(grads[name], t) == set()
        assert (t.elements, t.numel, t.n_unstable, t.sampled) == (
            LINEAR[name].numel(),
            LINEAR[name].numel(),
            0,
            False,
        )
        # float64 central differences of a linear function: rounding only, far inside 1e-7
        assert float((t.grad - grads[name]).abs().max()) < 1e-9
        assert float(t.error.max()) < 1e-7


def test_tanh_and_softmax_agree_and_nothing_smooth_is_flagged() -> None:
    x = randn(6, 5, seed=5)
    g = {"out": randn(6, 5, seed=6)}
    for fn in (torch.tanh, lambda t: torch.softmax(t, dim=-1), lambda t: torch.log_softmax(3 * t, dim=0)):

        def forward(v: Mapping[str, torch.Tensor], fn: Callable[[torch.Tensor], torch.Tensor] = fn) -> Values:
            return {"out": fn(v["x"])}

        num, grads = check(forward, {"x": x}, g, ["x"])
        assert mismatched(grads["x"], num["x"]) == set()
        assert num["x"].n_unstable == 0


def test_several_outputs_each_with_its_upstream_gradient() -> None:
    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        h = v["x"] @ v["w"]
        return {"h": h, "energy": (h**2).sum(dim=1), "scalar": h.mean()}

    values = {"x": randn(4, 3, seed=7), "w": randn(3, 6, seed=8)}
    grad_outs = {
        "h": randn(4, 6, seed=9),
        "energy": randn(4, seed=10),
        "scalar": torch.tensor(0.7, dtype=torch.float64),
    }
    num, grads = check(forward, values, grad_outs, ["x", "w"])
    assert mismatched(grads["x"], num["x"]) == mismatched(grads["w"], num["w"]) == set()
    # dropping an output changes the answer: every output's g is in the sum
    partial = numerical_vjp(forward, values, {"h": grad_outs["h"]}, ["w"])
    assert mismatched(grads["w"], partial["w"])


def test_an_integer_input_is_passed_through_and_never_perturbed() -> None:
    seen: list[torch.Tensor] = []

    def embedding(v: Mapping[str, torch.Tensor]) -> Values:
        seen.append(v["indices"])
        return {"out": v["weight"][v["indices"]]}

    indices = torch.tensor([[0, 2], [2, 3], [1, 1]])
    values = {"indices": indices, "weight": randn(5, 3, seed=11)}
    num, grads = check(embedding, values, {"out": randn(3, 2, 3, seed=12)}, ["weight"], vectorize=False)
    assert mismatched(grads["weight"], num["weight"]) == set()
    assert all(t.dtype == torch.int64 and torch.equal(t, indices) for t in seen)
    assert torch.equal(num["weight"].grad[4], torch.zeros(3, dtype=torch.float64))  # row 4 is never looked up
    with pytest.raises(NumericalError, match="integer tensor"):
        numerical_vjp(embedding, values, {"out": randn(3, 2, 3)}, ["indices"])


def test_a_numpy_forward_runs_through_the_loop() -> None:
    def numpy_affine(v: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        x, w, b = (v[k].numpy() for k in ("x", "weight", "bias"))
        return {"out": x @ w.T + b}

    grads = autograd(linear, LINEAR, LINEAR_G, ["x", "weight", "bias"])
    for group in (True, False):
        num = numerical_vjp(numpy_affine, LINEAR, LINEAR_G, ["x", "weight", "bias"], group=group)
        assert not num.vectorized
        assert num.evaluations == num.forward_calls  # one call per forward: no batching
        for name in ("x", "weight", "bias"):
            assert mismatched(grads[name], num[name]) == set()
    assert num.fallback is not None  # one by one, vmap was tried, and given up


def test_a_pure_torch_forward_is_vectorized_and_gives_the_loops_answer() -> None:
    values = {"x": randn(6, 7, seed=13)}

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": torch.tanh(v["x"]).cumsum(dim=1)}  # every element reaches several outputs

    g = {"out": randn(6, 7, seed=14)}
    batched = numerical_vjp(forward, values, g, ["x"], group=False)
    looped = numerical_vjp(forward, values, g, ["x"], group=False, vectorize=False)
    assert batched.vectorized and batched.fallback is None
    assert not looped.vectorized and looped.forward_calls == looped.evaluations > 80
    assert batched.forward_calls < looped.forward_calls / 3  # a batch is one call
    assert float((batched["x"].grad - looped["x"].grad).abs().max()) < 1e-9


def _scaled_by_sum(v: Mapping[str, torch.Tensor]) -> Values:
    return {"out": v["x"] * v["x"].sum()}


@pytest.mark.parametrize(
    ("forward", "same_in_torch"),
    [
        pytest.param(lambda v: {"out": v["x"] * float(v["x"].sum().item())}, _scaled_by_sum, id="item"),
        pytest.param(
            lambda v: {"out": v["x"] * (v["x"].sum() if bool(v["x"].sum() > 0) else -v["x"].sum())},
            _scaled_by_sum,
            id="control-flow",
        ),
        pytest.param(
            lambda v: {"out": v["x"] * float(np.sum(v["x"].numpy()))}, _scaled_by_sum, id="numpy-inside"
        ),
    ],
)
def test_vmap_falls_back_to_the_loop_once_for_a_forward_it_cannot_batch(
    forward: Forward, same_in_torch: Forward
) -> None:
    values = {"x": randn(3, 4, seed=15).abs() + 0.5, "y": randn(2, seed=16)}
    grad_outs = {"out": randn(3, 4, seed=17)}
    num = numerical_vjp(forward, values, grad_outs, ["x"], group=False)
    assert not num.vectorized and num.fallback
    assert num.evaluations == num.forward_calls
    assert mismatched(autograd(same_in_torch, values, grad_outs, ["x"])["x"], num["x"]) == set()


def test_a_forward_that_writes_into_its_input_still_gets_the_right_gradient() -> None:
    def shift_in_place(v: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        x = v["x"].numpy()
        x += 1.0  # on the input itself: a second call on the same array would see x + 2
        return {"out": x**2}

    x = randn(4, 5, seed=50)
    g = {"out": randn(4, 5, seed=51)}
    num = numerical_vjp(shift_in_place, {"x": x}, g, ["x"])
    expected = autograd(lambda v: {"out": (v["x"] + 1.0) ** 2}, {"x": x}, g, ["x"])["x"]
    assert mismatched(expected, num["x"]) == set()
    assert torch.equal(x, randn(4, 5, seed=50))  # and the caller's tensor is untouched


# --- wrong gradients disagree at the right elements ----------------------------------------------


def test_a_transposed_weight_gradient_fails_off_the_diagonal() -> None:
    values = {"x": randn(5, 4, seed=18), "weight": randn(4, 4, seed=19), "bias": randn(4, seed=20)}
    g = {"out": randn(5, 4, seed=21)}
    num, grads = check(linear, values, g, ["weight"])
    wrong = grads["weight"].T  # grad_out.T @ x, transposed
    assert mismatched(wrong, num["weight"]) == {(i, j) for i in range(4) for j in range(4) if i != j}
    cmp = comparison(wrong, num["weight"])
    worst = cmp.worst(ATOL, RTOL)
    assert worst is not None and worst[0][0] != worst[0][1]
    assert worst[1] == pytest.approx(float(grads["weight"][worst[0]]), abs=1e-8)


def test_a_missing_bias_sum_fails_every_bias_element_and_a_sign_error_every_x_element() -> None:
    num, grads = check(linear, LINEAR, LINEAR_G, ["x", "bias"])
    not_summed = LINEAR_G["out"][0]  # grad_out's first row instead of its sum over the batch
    assert mismatched(not_summed, num["bias"]) == {(j,) for j in range(4)}
    assert mismatched(-grads["x"], num["x"]) == {(i, j) for i in range(5) for j in range(3)}
    assert mismatched(grads["bias"], num["bias"]) == set()


def test_one_wrong_element_is_the_only_one_flagged() -> None:
    num, grads = check(linear, LINEAR, LINEAR_G, ["weight"])
    wrong = grads["weight"].clone()
    wrong[2, 1] *= 1 + 1e-5  # a tiny error: 1e-5 relative is 100 times the tolerance
    assert mismatched(wrong, num["weight"]) == {(2, 1)}


def _conv2d() -> tuple[Forward, Values, Values, Values, Values]:
    from gradcheck_cli.layers import conv

    values = {"x": randn(2, 3, 7, 6, seed=60), "w": randn(4, 3, 3, 3, seed=61), "b": randn(4, seed=62)}

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": conv.conv2d_forward(v["x"], v["w"], v["b"], 2, 1, 1)}

    g = {"out": randn(2, 4, 4, 3, seed=63)}
    gx, gw, gb = conv.conv2d_backward(g["out"], values["x"], values["w"], 2, 1, 1)
    wrong = {"x": gx, "w": gw, "b": gb * 2}  # bias summed twice
    return forward, values, g, {"x": gx, "w": gw, "b": gb}, wrong


def _batch_norm() -> tuple[Forward, Values, Values, Values, Values]:
    from gradcheck_cli.layers import normalization

    values = {"x": randn(6, 5, seed=64), "w": randn(5, seed=65), "b": randn(5, seed=66)}

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": normalization.batch_norm_forward(v["x"], v["w"], v["b"], 1e-5)}

    g = {"out": randn(6, 5, seed=67)}
    gx, gw, gb = normalization.batch_norm_backward(g["out"], values["x"], values["w"], 1e-5)
    x_hat = (values["x"] - values["x"].mean(0)) / (values["x"].var(0, unbiased=False) + 1e-5).sqrt()
    no_mean_term = g["out"] * values["w"] / (values["x"].var(0, unbiased=False) + 1e-5).sqrt()
    return (
        forward,
        values,
        g,
        {"x": gx, "w": gw, "b": gb},
        {"x": no_mean_term, "w": (g["out"] * x_hat).sum(0), "b": gb},
    )


def _lstm_cell() -> tuple[Forward, Values, Values, Values, Values]:
    from gradcheck_cli.layers import recurrent

    names = ["x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"]
    shapes = [(3, 4), (3, 5), (3, 5), (20, 4), (20, 5), (20,), (20,)]
    values = {n: randn(*shape, seed=70 + i) for i, (n, shape) in enumerate(zip(names, shapes))}

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        h_next, c_next, _ = recurrent.lstm_cell_forward(*(v[n] for n in names))
        return {"h_next": h_next, "c_next": c_next}

    g = {"h_next": randn(3, 5, seed=80), "c_next": randn(3, 5, seed=81)}
    _, _, cache = recurrent.lstm_cell_forward(*(values[n] for n in names))
    grads = dict(zip(names, recurrent.lstm_cell_backward(g["h_next"], g["c_next"], cache)))
    wrong = dict(grads, c=grads["c"] - g["c_next"] * 0.5)  # half of the direct path to c lost
    return forward, values, g, grads, wrong


@pytest.mark.parametrize(
    "layer", [_conv2d, _batch_norm, _lstm_cell], ids=["conv2d", "batch_norm", "lstm_cell"]
)
def test_the_built_in_layers_backwards_agree_and_a_planted_bug_is_found(
    layer: Callable[[], tuple[Forward, Values, Values, Values, Values]],
) -> None:
    forward, values, g, right, wrong = layer()
    num = numerical_vjp(forward, values, g, list(right))
    for name in right:
        assert mismatched(right[name], num[name]) == set(), name
    failing = {name for name in right if mismatched(wrong[name], num[name])}
    assert failing == {name for name in right if not torch.allclose(wrong[name], right[name])}
    assert failing


# --- kinks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn", [torch.relu, torch.abs, lambda t: F.leaky_relu(t, 0.1)], ids=["relu", "abs", "leaky_relu"]
)
def test_elements_exactly_at_a_kink_are_flagged_not_failed(
    fn: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    x = randn(6, 5, seed=22)
    kinks = {(0, 0), (2, 3), (4, 1)}
    for i in kinks:
        x[i] = 0.0

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": fn(v["x"] @ torch.eye(5, dtype=torch.float64))}

    num, grads = check(forward, {"x": x}, {"out": randn(6, 5, seed=23)}, ["x"])
    t = num["x"]
    assert {tuple(i) for i in t.unstable.nonzero().tolist()} == kinks
    assert t.n_unstable == 3
    assert mismatched(grads["x"], t) == set()  # the 27 others agree; the 3 are not compared
    assert comparison(grads["x"], t).unstable == 3 and len(comparison(grads["x"], t).index) == 27


def test_a_max_pool_tie_flags_both_tied_elements_and_the_rest_agree() -> None:
    x = randn(2, 3, 4, 4, seed=24)
    x[0, 0, 0, 1] = x[0, 0, 0, 0] = x[0, 0, :2, :2].max() + 1  # a tie for the window's max
    x[1, 2, 2, 2] = x[1, 2, 3, 3] = x[1, 2, 2:, 2:].max() + 1

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": F.max_pool2d(v["x"], 2)}

    num, grads = check(forward, {"x": x}, {"out": randn(2, 3, 2, 2, seed=25)}, ["x"])
    t = num["x"]
    assert {tuple(i) for i in t.unstable.nonzero().tolist()} == {
        (0, 0, 0, 0),
        (0, 0, 0, 1),
        (1, 2, 2, 2),
        (1, 2, 3, 3),
    }
    assert mismatched(grads["x"], t) == set()
    assert float(t.grad[0, 0, 0, 0]) == pytest.approx(
        float(grads["x"][0, 0, 0, 0] + grads["x"][0, 0, 0, 1]) / 2
    )


def test_a_tie_between_two_members_of_a_group_is_never_read_as_a_third() -> None:
    # x[0] and x[1] tie for a max; moved together with x[2], the max moves up whenever either
    # goes up: a code must not mistake that for x[2] (or for either of them alone).
    x = torch.tensor([0.5, 0.5, -0.3], dtype=torch.float64)

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": torch.stack([torch.maximum(v["x"][0], v["x"][1]), 3 * v["x"][2]])}

    g = {"out": torch.tensor([1.0, 2.0], dtype=torch.float64)}
    for vectorize in (False, True):
        t = numerical_vjp(forward, {"x": x}, g, ["x"], vectorize=vectorize)["x"]
        assert t.unstable.tolist() == [True, True, False]
        assert float(t.grad[2]) == pytest.approx(6.0)


def test_a_kink_inside_the_step_but_not_at_the_point_is_flagged() -> None:
    x = randn(8, seed=26).abs() + 1
    x[3] = -2e-6  # relu's kink at 0 is within the step (6e-6) of x[3]

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": torch.relu(v["x"])}

    num = numerical_vjp(forward, {"x": x}, {"out": randn(8, seed=27)}, ["x"])
    assert num["x"].unstable.nonzero().reshape(-1).tolist() == [3]


def test_a_smooth_function_with_large_curvature_is_not_flagged() -> None:
    x = randn(30, seed=28)

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {
            "out": torch.exp(4 * v["x"]) + v["x"] ** 2
        }  # x**2 is stationary at 0: a suspect, confirmed smooth

    x[5] = 0.0
    num, grads = check(forward, {"x": x}, {"out": randn(30, seed=29)}, ["x"])
    assert num["x"].n_unstable == 0
    assert mismatched(grads["x"], num["x"]) == set()


def test_grouped_elements_give_what_one_by_one_gives() -> None:
    # Elements moved together (outputs told apart by which member moved them) must give what
    # moving them one at a time gives: the same outputs, summed in another order.
    cases: list[tuple[Forward, Values, Values]] = [
        (linear, LINEAR, LINEAR_G),
        (
            lambda v: {"out": F.conv2d(v["x"], v["w"], padding=1)},
            {"x": randn(2, 3, 5, 5, seed=30), "w": randn(4, 3, 3, 3, seed=31)},
            {"out": randn(2, 4, 5, 5, seed=32)},
        ),
        (
            lambda v: {"out": F.layer_norm(v["x"], (6,), v["w"], v["b"])},
            {"x": randn(5, 6, seed=33), "w": randn(6, seed=34), "b": randn(6, seed=35)},
            {"out": randn(5, 6, seed=36)},
        ),
    ]
    for forward, values, g in cases:
        names = list(values)
        grouped = numerical_vjp(forward, values, g, names, vectorize=False)
        single = numerical_vjp(forward, values, g, names, vectorize=False, group=False)
        for name in names:
            assert bool(((grouped[name].grad - single[name].grad).abs() <= single[name].error).all()), name
            assert mismatched(autograd(forward, values, g, [name])[name], grouped[name]) == set()
        assert any(grouped[name].grouping.startswith("groups along axis") for name in names)


def test_a_linear_weight_is_moved_a_column_at_a_time() -> None:
    values = {"x": randn(3, 40, seed=37), "weight": randn(30, 40, seed=38), "bias": randn(30, seed=39)}
    num = numerical_vjp(linear, values, {"out": randn(3, 30, seed=40)}, ["weight"], samples=None)
    # 40 columns of 30 rows (less a first batch moved one by one, which times a batched forward):
    # 2 + 2 * 5 forwards each instead of 2 * 1200
    assert num["weight"].grouping.startswith("groups along axis 0: 40 groups of")
    assert num.evaluations < 40 * 12 + 200 < 2 * 1200


# --- sampling ------------------------------------------------------------------------------------


def test_sampling_checks_a_seeded_subset_plus_random_directions() -> None:
    values = {"x": randn(20, 10, seed=41)}
    g = {"out": randn(20, 10, seed=42)}

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": torch.sin(v["x"])}

    a = numerical_vjp(forward, values, g, ["x"], samples=30, seed=1)["x"]
    b = numerical_vjp(forward, values, g, ["x"], samples=30, seed=1)["x"]
    c = numerical_vjp(forward, values, g, ["x"], samples=30, seed=2)["x"]
    assert a.sampled and a.sampling() == {"elements": 30, "numel": 200, "directions": 4}
    assert torch.equal(a.computed, b.computed) and torch.equal(a.directions, b.directions)
    assert not torch.equal(a.computed, c.computed)
    assert bool(a.grad[~a.computed].isnan().all()) and bool(a.grad[a.computed].isfinite().all())
    full = numerical_vjp(forward, values, g, ["x"], samples=None)["x"]
    assert not full.sampled and len(full.directional) == 0


def test_a_sampled_element_gets_the_value_it_gets_in_full() -> None:
    values = {"x": randn(3, 40, seed=52), "weight": randn(30, 40, seed=53), "bias": randn(30, seed=54)}
    g = {"out": randn(3, 30, seed=55)}
    sampled = numerical_vjp(linear, values, g, ["weight"], samples=200)["weight"]
    full = numerical_vjp(linear, values, g, ["weight"], samples=None)["weight"]
    assert sampled.elements == 200 and sampled.grouping.startswith("groups along axis 0")
    at = sampled.computed
    assert bool(((sampled.grad[at] - full.grad[at]).abs() <= full.error[at] + sampled.error[at]).all())


def test_the_directions_catch_an_error_in_an_element_outside_the_subset() -> None:
    values = {"x": randn(10, 10, seed=43)}
    g = {"out": randn(10, 10, seed=44)}

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": torch.tanh(v["x"])}

    num, grads = check(forward, values, g, ["x"], samples=10, seed=3)
    t = num["x"]
    outside = tuple(int(i) for i in (~t.computed).nonzero()[0])
    wrong = grads["x"].clone()
    wrong[outside] += 0.5
    elements, directions = comparison(wrong, t).close(ATOL, RTOL)
    assert bool(elements.all())  # the sampled elements do not see it
    assert not bool(directions.all())  # the directions over the whole tensor do
    assert all(comparison(grads["x"], t).close(ATOL, RTOL)[1])  # and pass the correct gradient
    # tanh curves: the one-sided differences along a direction differ, but shrink with the step,
    # so the directional error is the truncation measured, not half that gap
    assert float(t.directional_error.max()) < 1e-7


# --- errors --------------------------------------------------------------------------------------


def test_a_forward_that_raises_on_a_perturbed_input_names_the_element() -> None:
    x = randn(3, 4, seed=45).abs() + 1
    x[1, 2] = 0.0

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        if bool((v["x"] < 0).any()):
            raise ValueError("x must be non-negative")
        return {"out": v["x"].sqrt()}

    with pytest.raises(ForwardError) as info:
        numerical_vjp(forward, {"x": x}, {"out": randn(3, 4)}, ["x"])
    assert info.value.tensor == "x" and info.value.index == (1, 2) and info.value.step is not None
    assert str(info.value).startswith(
        "the forward raised ValueError: x must be non-negative with x[1, 2] perturbed by -"
    )
    assert isinstance(info.value.__cause__, ValueError)


def test_outputs_that_are_not_finite_are_reported_not_compared() -> None:
    x = randn(6, seed=46).abs() + 1
    x[4] = 0.0

    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": torch.sqrt(v["x"])}  # sqrt(-h) is NaN

    t = numerical_vjp(forward, {"x": x}, {"out": randn(6, seed=47)}, ["x"])["x"]
    assert t.nonfinite.nonzero().reshape(-1).tolist() == [4] and t.n_unstable == 0
    cmp = comparison(torch.zeros(6, dtype=torch.float64), t)
    assert cmp.nonfinite == 1 and 4 not in cmp.index.tolist()

    x[4] = -1.0  # NaN at the unperturbed input: nothing to difference
    with pytest.raises(NumericalError, match="output out is not finite at the unperturbed input"):
        numerical_vjp(forward, {"x": x}, {"out": randn(6)}, ["x"])


def test_a_forward_that_is_not_deterministic_is_refused() -> None:
    def dropout(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": F.dropout(v["x"], 0.5)}

    with pytest.raises(NumericalError, match="deterministic"):
        numerical_vjp(dropout, {"x": randn(4, 4)}, {"out": randn(4, 4)}, ["x"])


def test_bad_arguments_are_one_line_errors() -> None:
    g = {"out": randn(5, 4)}
    with pytest.raises(NumericalError, match="nope: not among the values"):
        numerical_vjp(linear, LINEAR, g, ["nope"])
    with pytest.raises(NumericalError, match="returned no output 'y'"):
        numerical_vjp(linear, LINEAR, {"y": randn(5, 4)}, ["x"])
    with pytest.raises(
        NumericalError, match=r"output 'out' has shape \[5, 4\], its upstream gradient \[4, 5\]"
    ):
        numerical_vjp(linear, LINEAR, {"out": randn(4, 5)}, ["x"])
    with pytest.raises(ValueError, match=r"shape \[3, 4\], the tensor \[4, 3\]"):
        comparison(torch.zeros(3, 4), numerical_vjp(linear, LINEAR, g, ["weight"])["weight"])
    with pytest.raises(ValueError, match="the analytic gradient is complex"):  # not its real part, silently
        comparison(torch.zeros(4, 3) + 1j, numerical_vjp(linear, LINEAR, g, ["weight"])["weight"])


def test_a_float32_output_limits_the_precision_and_says_so() -> None:
    def forward(v: Mapping[str, torch.Tensor]) -> Values:
        return {"out": torch.tanh(v["x"]).float()}

    x = randn(4, 3, seed=48)
    g = {"out": randn(4, 3, seed=49)}
    num = numerical_vjp(forward, {"x": x}, g, ["x"])
    assert any("not float64" in w for w in num.warnings)
    exact = autograd(lambda v: {"out": torch.tanh(v["x"])}, {"x": x}, g, ["x"])["x"]
    # float32 rounding over a 6e-6 step: ~1e-2 relative; the error estimate covers it
    assert bool(((num["x"].grad - exact).abs() <= num["x"].error).all())
    assert float(num["x"].error.max()) > 1e-4


def test_the_header_names_the_method_and_the_step() -> None:
    num = numerical_vjp(linear, LINEAR, LINEAR_G, ["x"])
    assert num.describe() == "central differences, eps=6.1e-06 relative"
    assert num["x"].summary() == "x: all 15 elements"
