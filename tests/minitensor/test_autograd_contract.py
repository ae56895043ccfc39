r"""The contract of ``Function.backward``, and the engine's check of it (debug mode).

The engine keeps a fresh gradient array as a leaf's ``.grad`` without copying it
and later adds into it in place (``leaf.grad += g``). That is only safe if every
array a backward returns is new, or a view of the ``grad`` it was given. An op
that returns one of its saved arrays, a forward input or output, or another
gradient of the pass breaks it. In debug mode (``MINITENSOR_DEBUG=1``,
``mt.set_debug(True)``, ``with mt.debug_mode():``, and inside every
``mt.testing.gradcheck``) the engine raises ``mt.AutogradContractError`` naming the op.

The ops below are written the way a student might write them. The tests that
expect an error switch the check on, the ones that show the silent corruption
switch it off, so the file passes with and without ``MINITENSOR_DEBUG=1``.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import minitensor as mt
from minitensor.autograd import _debug_from_env, _shares_memory


def leaf(shape, seed=0):
    return mt.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


# ---------------------------------------------------------------- contract-breaking ops
class ExpReturnsY(mt.Function):
    r"""$y = e^x$, whose backward returns the saved $y$ itself: right only when $\bar y = 1$,
    and even then the caller's ``x.grad`` IS the forward output."""

    @staticmethod
    def forward(ctx, x):
        y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y  # should be grad * y


class ExpInPlace(ExpReturnsY):
    r"""$\bar x = \bar y\, e^x$ computed "to save memory" in the saved array: the right
    numbers, returned in an array the op owns."""

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        y *= grad
        return y


class ExpReturnsViewOfY(ExpReturnsY):
    """Returns a view of a view of the saved output (``y.T.T``, then a reshape)."""

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return y.T.T.reshape(y.shape)


class ScaleKeepsOnCtx(mt.Function):
    """$y = 2x$, whose backward hands back an array stored as a ctx attribute."""

    @staticmethod
    def forward(ctx, x):
        ctx.two = np.full_like(x, 2.0)
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        ctx.two *= grad
        return ctx.two


class IdentityReturnsInput(mt.Function):
    """$y = x$ (a copy), whose backward returns the forward input's array (not saved)."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return ctx.parents[0].data  # the forward input: must never be handed out


_BUFFERS = {}


class DoubleWithBuffer(mt.Function):
    r"""$y = 2x$ whose backward writes $2\bar y$ into ONE buffer per shape, shared by every
    node of the op: the second node overwrites the first node's gradient."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        buf = _BUFFERS.setdefault(grad.shape, np.empty(grad.shape))
        np.multiply(grad, 2, out=buf)
        return buf


# ---------------------------------------------------------------- ops that keep the contract
class AddLike(mt.Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad  # the same array for both inputs: allowed, the engine copies


class ReshapeLike(mt.Function):
    @staticmethod
    def forward(ctx, x, shape):
        ctx.in_shape = x.shape
        return x.reshape(shape)  # the output is a view of the input

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.in_shape)  # a view of grad: allowed


class TransposeLike(mt.Function):
    @staticmethod
    def forward(ctx, x):
        return x.T

    @staticmethod
    def backward(ctx, grad):
        return grad.T.T.T  # a view of a view of grad: allowed


# ---------------------------------------------------------------- the check catches them
def test_returning_a_saved_input_is_an_error_naming_the_op():
    x = leaf((3, 4))
    with mt.debug_mode():
        y = ExpReturnsY.apply(x)
        with pytest.raises(mt.AutogradContractError) as err:
            y.sum().backward()
    msg = str(err.value)
    assert "ExpReturnsY.backward" in msg
    assert "input 0" in msg and "ctx.saved_tensors[0]" in msg
    assert "return a new array, e.g. grad * y, not y itself" in msg.lower()
    assert isinstance(err.value, RuntimeError)


def test_returning_a_view_of_a_saved_input_is_caught():
    with mt.debug_mode(), pytest.raises(mt.AutogradContractError, match=r"ExpReturnsViewOfY.*saved_tensors\[0\]"):
        ExpReturnsViewOfY.apply(leaf((3, 4))).sum().backward()


def test_an_array_stored_on_ctx_is_caught():
    with mt.debug_mode(), pytest.raises(mt.AutogradContractError, match=r"ScaleKeepsOnCtx.*ctx\.two"):
        ScaleKeepsOnCtx.apply(leaf((2, 3))).sum().backward()


def test_returning_a_forward_input_is_caught():
    with mt.debug_mode(), pytest.raises(mt.AutogradContractError, match="IdentityReturnsInput.*forward input 0"):
        IdentityReturnsInput.apply(leaf((2, 3))).sum().backward()


def test_returning_another_leafs_gradient_is_caught():
    x1, x2 = leaf((2, 3), seed=1), leaf((2, 3), seed=2)
    loss = (DoubleWithBuffer.apply(x1) * DoubleWithBuffer.apply(x2)).sum()
    with mt.debug_mode(), pytest.raises(mt.AutogradContractError, match=r"DoubleWithBuffer.*\.grad of a leaf"):
        loss.backward()


def test_returning_another_pending_gradient_is_caught():
    x = leaf((2, 3))
    u = x * 1.0  # a non-leaf: its gradient waits in the engine until both branches are done
    loss = (DoubleWithBuffer.apply(u) * DoubleWithBuffer.apply(u * 3.0)).sum()
    with mt.debug_mode(), pytest.raises(mt.AutogradContractError,
                                        match="DoubleWithBuffer.*another pending gradient"):
        loss.backward()


def test_gradcheck_always_checks_the_contract():
    """Even with debug mode off, and even when the numbers are right (ExpInPlace)."""
    with mt.debug_mode(False):
        for op in (ExpReturnsY, ExpInPlace, ExpReturnsViewOfY):
            with pytest.raises(mt.AutogradContractError, match=op.__name__):
                mt.testing.gradcheck(op.apply, leaf((2, 3)))
            with pytest.raises(mt.AutogradContractError, match=op.__name__):
                mt.testing.directional_check(op.apply, leaf((2, 3)))
        assert not mt.is_debug_enabled()  # gradcheck restores the setting


# ---------------------------------------------------------------- what is allowed
def test_grad_itself_for_several_inputs_and_views_of_grad_pass():
    a, b = leaf((2, 6), seed=1), leaf((2, 6), seed=2)
    with mt.debug_mode():
        # AddLike's two outputs feed non-leaf nodes whose backwards return views of that
        # same grad: a view of one's own grad is fine even if another pending gradient shares it.
        s = AddLike.apply(a, b)
        left = TransposeLike.apply(ReshapeLike.apply(s, shape=(3, 4)))
        right = ReshapeLike.apply(AddLike.apply(s, s), shape=(4, 3))
        (left * right).sum().backward()
        assert a.grad is not None and b.grad is not None
    assert mt.testing.gradcheck(lambda a, b: TransposeLike.apply(ReshapeLike.apply(AddLike.apply(a, b), shape=(4, 3))),
                                leaf((3, 4), seed=3), leaf((3, 4), seed=4))


def test_the_check_is_off_by_default_and_switchable():
    prev = mt.set_debug(False)
    try:
        assert not mt.is_debug_enabled()
        with mt.debug_mode():
            assert mt.is_debug_enabled()
            with mt.debug_mode(False):
                assert not mt.is_debug_enabled()
            assert mt.is_debug_enabled()
        assert mt.set_debug(True) is False and mt.is_debug_enabled()

        @mt.debug_mode(False)
        def quiet():
            return mt.is_debug_enabled()

        assert quiet() is False and mt.is_debug_enabled()
    finally:
        mt.set_debug(prev)


def test_debug_mode_restores_the_setting_after_an_error():
    prev = mt.set_debug(False)
    try:
        with pytest.raises(mt.AutogradContractError), mt.debug_mode():
            ExpReturnsY.apply(leaf(3)).sum().backward()
        assert not mt.is_debug_enabled()
    finally:
        mt.set_debug(prev)


@pytest.mark.parametrize(("text", "on"), [("", False), ("0", False), ("1", True), (" 1 ", True)])
def test_minitensor_debug_values(monkeypatch, text, on):
    monkeypatch.setenv("MINITENSOR_DEBUG", text)
    assert _debug_from_env() is on


def test_minitensor_debug_rejects_other_values(monkeypatch):
    monkeypatch.setenv("MINITENSOR_DEBUG", "yes")
    with pytest.raises(ValueError, match="MINITENSOR_DEBUG must be 0 or 1, got 'yes'"):
        _debug_from_env()


def test_minitensor_debug_1_switches_the_check_on_at_import():
    code = ("import minitensor as mt; assert mt.is_debug_enabled()\n"
            "import numpy as np\n"
            "class Bad(mt.Function):\n"
            "    forward = staticmethod(lambda ctx, x: ctx.save_for_backward(x) or x * 2)\n"
            "    backward = staticmethod(lambda ctx, grad: ctx.saved_tensors[0])\n"
            "try:\n"
            "    Bad.apply(mt.tensor(np.ones(3), requires_grad=True)).sum().backward()\n"
            "except mt.AutogradContractError as err:\n"
            "    print(err)\n")
    env = {**os.environ, "MINITENSOR_DEBUG": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("Bad.backward broke the autograd contract")


def test_memory_overlap_is_exact():
    base = np.zeros((4, 6))
    assert _shares_memory(base.T[1:].T[::2], base)  # a view of a view of a view
    assert _shares_memory(base.reshape(-1)[10:14], base[2])  # a flat view reaching into row 2
    assert not _shares_memory(base[:2], base[2:])  # disjoint slices of one buffer
    assert not _shares_memory(base[:, ::2], base[:, 1::2])  # interleaved, bounds overlap, no common element
    assert not _shares_memory(base, base.copy())


# ---------------------------------------------------------------- why the rule exists
def test_without_the_check_a_saved_input_returned_corrupts_a_later_update():
    """Check off, nothing is raised, and the leaf's .grad IS the forward output: the next
    gradient accumulated into x (``x.grad += ...``) silently changes y, and a backward
    through the same graph again silently gets a wrong gradient."""
    x = leaf((2, 3))
    with mt.debug_mode(False):
        y = ExpReturnsY.apply(x)
        y.sum().backward()  # the gradient is right this time: dL/dx = e^x
        assert np.allclose(x.grad, np.exp(x.data))
        assert np.shares_memory(x.grad, y.data)  # ...but it is y's own memory
        (3.0 * x).sum().backward()  # x.grad += 3, in place
        assert np.allclose(x.grad, np.exp(x.data) + 3)  # the gradient is right
        assert not np.allclose(y.data, np.exp(x.data))  # the forward value is not: y = e^x + 3
        assert np.allclose(y.data, np.exp(x.data) + 3)


def test_without_the_check_right_numbers_in_the_wrong_memory_give_wrong_gradients():
    """ExpInPlace returns the right numbers; reusing its graph (two losses from one y)
    gives a wrong gradient and overwrites the forward value, with no error."""
    x = leaf((2, 3))
    w = np.random.default_rng(5).standard_normal((2, 3))
    with mt.debug_mode(False):
        y = ExpInPlace.apply(x)
        (y * mt.tensor(w)).sum().backward()
        assert np.allclose(x.grad, w * np.exp(x.data))  # right
        x.grad = None
        (y * mt.tensor(w)).sum().backward()  # the same loss again, on the same graph
        assert not np.allclose(x.grad, w * np.exp(x.data))  # wrong: y was overwritten by the first backward
    with mt.debug_mode(), pytest.raises(mt.AutogradContractError, match="ExpInPlace"):
        (ExpInPlace.apply(x) * mt.tensor(w)).sum().backward()


def test_without_the_check_a_shared_buffer_overwrites_another_gradient():
    x1, x2 = leaf((2, 3), seed=1), leaf((2, 3), seed=2)
    with mt.debug_mode(False):
        loss = (DoubleWithBuffer.apply(x1) * DoubleWithBuffer.apply(x2)).sum()
        loss.backward()
    # d/dx1 of sum(2 x1 * 2 x2) is 4 x2 and d/dx2 is 4 x1; the first leaf served keeps the
    # buffer as its .grad, and the second node overwrites it with the other gradient.
    right = {"x1": 4 * x2.data, "x2": 4 * x1.data}
    wrong = [name for name, t in (("x1", x1), ("x2", x2)) if not np.allclose(t.grad, right[name])]
    assert len(wrong) == 1
    assert np.array_equal(x1.grad, x2.grad)
