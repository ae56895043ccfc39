"""Checks for lesson 01 (scalar autograd). Run with `pytest -m lesson01`.

The lesson file is executed once per module with runpy; the tests use the
names it defines (`Value`, `topological_order`, `train`, `losses`, ...).
"""

import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.lesson01


# Central differences in float64 with this step are accurate to ~1e-9 for the
# bounded inputs below; the tolerances leave a wide margin above that.
H = 1e-6
RTOL = 1e-5
ATOL = 1e-6

# Final XOR loss of the lesson's demo (MLP(2, 4, 1), 50 steps, lr 0.5, seed 0).
# Measured: 0.0095 (step 0: 1.058). The bound leaves about 2x margin.
FINAL_LOSS_BOUND = 0.02




@pytest.fixture(scope="module")
def Value(lesson):
    return lesson["Value"]


# Bounded inputs keep exp/pow finite; the shifted ones keep away from kinks and poles.
finite = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=0.5, max_value=3.0, allow_nan=False, allow_infinity=False)
# |x| >= 0.5: away from relu's kink at 0 and from the pole of 1/x.
away_from_zero = finite.map(lambda a: a + 0.5 if a >= 0 else a - 0.5)


def assert_grads_match(Value, f, *xs):
    """Autograd gradient of f at xs equals the central finite difference, for every input."""
    leaves = [Value(x) for x in xs]
    out = f(*leaves)
    out.backward()
    assert out.grad == 1.0  # the seed dL/dL
    for i, leaf in enumerate(leaves):
        plus = [x + H if j == i else x for j, x in enumerate(xs)]
        minus = [x - H if j == i else x for j, x in enumerate(xs)]
        numeric = (f(*map(Value, plus)).data - f(*map(Value, minus)).data) / (2 * H)
        assert leaf.grad == pytest.approx(numeric, rel=RTOL, abs=ATOL), (i, xs)


# --- forward values -------------------------------------------------------


@given(a=finite, b=away_from_zero)
def test_forward_values(Value, a, b):
    x, y = Value(a), Value(b)
    assert (x + y).data == a + b
    assert (x * y).data == a * b
    assert (x - y).data == pytest.approx(a - b)
    assert (x / y).data == pytest.approx(a / b)
    assert (-x).data == -a
    assert (x**2).data == pytest.approx(a * a)
    assert x.tanh().data == pytest.approx(math.tanh(a))
    assert x.exp().data == pytest.approx(math.exp(a))
    assert x.relu().data == max(a, 0.0)


# --- gradients of each op against finite differences ------------------------


@settings(deadline=None)
@given(a=finite, b=finite)
def test_grad_add(Value, a, b):
    assert_grads_match(Value, lambda x, y: x + y, a, b)


@settings(deadline=None)
@given(a=finite, b=finite)
def test_grad_mul(Value, a, b):
    assert_grads_match(Value, lambda x, y: x * y, a, b)


@settings(deadline=None)
@given(a=finite, b=finite)
def test_grad_sub(Value, a, b):
    assert_grads_match(Value, lambda x, y: x - y, a, b)


@settings(deadline=None)
@given(a=finite, b=away_from_zero)
def test_grad_div(Value, a, b):
    assert_grads_match(Value, lambda x, y: x / y, a, b)


@settings(deadline=None)
@given(a=finite)
def test_grad_neg(Value, a):
    assert_grads_match(Value, lambda x: -x, a)


@settings(deadline=None)
@given(a=finite, n=st.sampled_from([1, 2, 3]))
def test_grad_pow_positive_integer_exponent(Value, a, n):
    assert_grads_match(Value, lambda x: x**n, a)


@settings(deadline=None)
@given(a=positive, n=st.sampled_from([-2, -1, -0.5, 0.5, 1.5, 2.5, 0]))
def test_grad_pow_any_exponent_positive_base(Value, a, n):
    assert_grads_match(Value, lambda x: x**n, a)


@settings(deadline=None)
@given(a=finite)
def test_grad_tanh(Value, a):
    assert_grads_match(Value, lambda x: x.tanh(), a)


@settings(deadline=None)
@given(a=finite)
def test_grad_exp(Value, a):
    assert_grads_match(Value, lambda x: x.exp(), a)


@settings(deadline=None)
@given(a=away_from_zero)
def test_grad_relu(Value, a):
    assert_grads_match(Value, lambda x: x.relu(), a)
    leaf = Value(a)
    leaf.relu().backward()
    assert leaf.grad == (1.0 if a > 0 else 0.0)


@settings(deadline=None)
@given(a=away_from_zero, c=away_from_zero)
def test_grad_with_plain_numbers_on_either_side(Value, a, c):
    """radd, rmul, rsub, rtruediv: a plain float on the left."""
    assert_grads_match(Value, lambda x: c + x, a)
    assert_grads_match(Value, lambda x: c * x, a)
    assert_grads_match(Value, lambda x: c - x, a)
    assert_grads_match(Value, lambda x: c / x, a)
    assert_grads_match(Value, lambda x: x + c, a)
    assert_grads_match(Value, lambda x: x * c, a)
    assert_grads_match(Value, lambda x: x - c, a)
    assert_grads_match(Value, lambda x: x / c, a)


def test_pow_rejects_a_value_exponent(Value):
    with pytest.raises(TypeError):
        Value(2.0) ** Value(3.0)


# --- accumulation -----------------------------------------------------------


@given(a=finite)
def test_value_used_twice_accumulates(Value, a):
    x = Value(a)
    (x * x).backward()
    assert x.grad == pytest.approx(2 * a)

    x = Value(a)
    (x + x).backward()
    assert x.grad == 2.0


@given(a=finite, b=finite)
def test_value_used_along_two_paths(Value, a, b):
    # L = a*b + a: one contribution through the product, one directly
    x, y = Value(a), Value(b)
    (x * y + x).backward()
    assert x.grad == pytest.approx(b + 1)
    assert y.grad == pytest.approx(a)


ONE_INPUT_OPS = {
    "tanh": lambda x: x.tanh(),
    "exp": lambda x: x.exp(),
    "relu": lambda x: x.relu(),
    "neg": lambda x: -x,
    "pow2": lambda x: x**2,
    "pow3": lambda x: x**3,
    "pow-1": lambda x: x**-1,
}


@settings(deadline=None)
@given(a=away_from_zero, name=st.sampled_from(sorted(ONE_INPUT_OPS)))
def test_every_op_accumulates_into_its_input(Value, a, name):
    """An op whose backward assigns (`=`) would drop the other uses of x."""
    op = ONE_INPUT_OPS[name]
    assert_grads_match(Value, lambda x: op(x) + x + op(x), a)


def test_backward_accumulates_across_calls(Value):
    x = Value(1.5)
    (x * 2.0).backward()
    (x * 3.0).backward()
    assert x.grad == pytest.approx(5.0)


# --- topological order ------------------------------------------------------

UNARY = ["tanh", "exp", "relu", "neg"]
BINARY = ["add", "mul", "sub"]


def build_random_graph(Value, data, n_leaves, n_ops):
    """A random DAG of Values in which nodes are reused; returns (leaves, nodes)."""
    leaf_data = data.draw(st.lists(finite, min_size=n_leaves, max_size=n_leaves))
    leaves = [Value(v) for v in leaf_data]
    nodes = list(leaves)
    for _ in range(n_ops):
        op = data.draw(st.sampled_from(UNARY + BINARY))
        i = data.draw(st.integers(0, len(nodes) - 1))
        j = data.draw(st.integers(0, len(nodes) - 1))
        x, y = nodes[i], nodes[j]
        if op == "tanh":
            z = x.tanh()
        elif op == "exp":
            z = (x * 0.1).exp()  # scaled so repeated exp stays finite
        elif op == "relu":
            z = x.relu()
        elif op == "neg":
            z = -x
        elif op == "add":
            z = x + y
        elif op == "mul":
            z = (x * y).tanh()  # squashed so repeated products stay bounded
        else:
            z = x - y
        nodes.append(z)
    return leaves, nodes


def reachable(root):
    """Every node root depends on, found with a plain worklist (independent of the lesson)."""
    seen, todo = {id(root): root}, [root]
    while todo:
        for p in todo.pop()._parents:
            if id(p) not in seen:
                seen[id(p)] = p
                todo.append(p)
    return seen


@settings(deadline=None, max_examples=100)
@given(data=st.data(), n_leaves=st.integers(1, 4), n_ops=st.integers(0, 12))
def test_topological_order_puts_every_node_after_its_parents(lesson, Value, data, n_leaves, n_ops):
    _, nodes = build_random_graph(Value, data, n_leaves, n_ops)
    root = nodes[-1]
    order = lesson["topological_order"](root)

    position = {id(node): k for k, node in enumerate(order)}
    assert len(position) == len(order), "a node appears twice"
    assert position.keys() == reachable(root).keys(), "not exactly the nodes root depends on"
    assert order[-1] is root
    for node in order:
        for parent in node._parents:
            assert position[id(parent)] < position[id(node)]


def test_topological_order_of_a_diamond(lesson, Value):
    a = Value(1.0)
    b, c = a * 2.0, a.tanh()
    d = b + c
    order = lesson["topological_order"](d)
    assert order[0] is a and order[-1] is d
    assert len([n for n in order if n is a]) == 1


@settings(deadline=None, max_examples=100)
@given(data=st.data(), n_leaves=st.integers(1, 3), n_ops=st.integers(1, 8))
def test_backward_on_random_graphs_matches_finite_differences(Value, data, n_leaves, n_ops):
    recipe_data = data.draw(st.randoms(use_true_random=False))
    leaf_values = [recipe_data.uniform(-1.0, 1.0) for _ in range(n_leaves)]
    ops = [
        (recipe_data.choice(UNARY + BINARY), recipe_data.random(), recipe_data.random())
        for _ in range(n_ops)
    ]

    def f(*leaves):
        nodes = list(leaves)
        for op, u, v in ops:
            x, y = nodes[int(u * len(nodes))], nodes[int(v * len(nodes))]
            if op == "tanh":
                z = x.tanh()
            elif op == "exp":
                z = (x * 0.1).exp()
            elif op == "relu":
                z = (x + 5.0).relu()  # shifted: inputs stay well inside relu's linear part
            elif op == "neg":
                z = -x
            elif op == "add":
                z = x + y
            elif op == "mul":
                z = (x * y).tanh()
            else:
                z = x - y
            nodes.append(z)
        return nodes[-1]

    assert_grads_match(Value, f, *leaf_values)


# --- deep graphs ------------------------------------------------------------


def test_deep_chain_backward_without_recursion_error(lesson, Value):
    # 10,000 deep, and always far beyond the recursion limit in force
    depth = max(10_000, 10 * sys.getrecursionlimit())
    x = Value(0.5)
    y = x
    for _ in range(depth):
        y = y + x  # y_N = (N + 1) x
    y.backward()
    assert x.grad == depth + 1
    assert len(lesson["topological_order"](y)) == depth + 1


def test_deep_chain_of_products(Value):
    # y_N = x * c^N: the gradient c^N passes through 10,000 multiplications
    depth, c = 10_000, 1.0001
    x = Value(2.0)
    y = x
    for _ in range(depth):
        y = y * c
    y.backward()
    assert x.grad == pytest.approx(c**depth, rel=1e-9)


def test_lesson_deep_chain_demo(lesson):
    assert lesson["DEPTH"] == 10_000
    assert lesson["x"].grad == lesson["DEPTH"] + 1


# --- the lesson's demos -----------------------------------------------------


def test_finite_difference_demo_agrees(lesson):
    fd_check = lesson["fd_check"]
    assert set(fd_check) == {"w1", "w2", "b"}
    for name, (autograd, numeric) in fd_check.items():
        assert autograd == pytest.approx(numeric, rel=RTOL, abs=ATOL), name
    # d tanh(w1*x1 + w2*x2 + b)/d b = 1 - tanh^2 at x = (2, -1)
    w1, w2, b = (lesson["weights"][k] for k in ("w1", "w2", "b"))
    t = math.tanh(2.0 * w1 - 1.0 * w2 + b)
    assert fd_check["b"][0] == pytest.approx(1.0 - t * t)


def test_training_demo_loss_goes_down(lesson):
    losses = lesson["losses"]
    assert len(losses) == 50
    assert losses[-1] < FINAL_LOSS_BOUND
    assert losses[-1] < 0.1 * losses[0]


def test_training_demo_fits_xor(lesson):
    model = lesson["model"]
    for x, y in zip(lesson["XOR_X"], lesson["XOR_Y"]):
        assert math.copysign(1.0, model(x).data) == y


def test_training_is_deterministic(lesson):
    _, again = lesson["train"]()
    assert again == lesson["losses"]
