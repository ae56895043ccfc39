r"""Matrix multiplication, and the affine map of a linear layer."""
from .. import kernels
from ..autograd import Function
from ..backend import get_array_module


@kernels.replaceable("matmul")
def matrix_product(a, b, bias=None):
    r"""$A B$ (plus ``bias`` on every row): NumPy's ``matmul`` of two arrays."""
    out = get_array_module(a, b).matmul(a, b)
    return out if bias is None else out + bias


@kernels.replaceable("matmul_pair")
def matrix_products(a, b, c, d):
    r"""$(A B,\ C D)$: two products at once, as a backward pass needs them (a kernel may run them side by side)."""
    return matrix_product(a, b), matrix_product(c, d)


class MatMul(Function):
    r"""$Y = A B$ (batched like ``np.matmul``, both inputs at least 2-D).

    From $Y_{ij} = \sum_k A_{ik} B_{kj}$: $\bar A = \bar Y B^\top,\ \bar B = A^\top \bar Y$.
    Batch axes may broadcast; the engine sums $\bar A, \bar B$ back over them.

    A stack of rows times one matrix, (..., K) @ (K, N), the shape of every
    linear layer, is folded into a single 2-D product: one large BLAS call is
    much faster than a loop of small ones.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        if a.ndim > 2 and b.ndim == 2:
            return matrix_product(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[-1])
        return matrix_product(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        xp = get_array_module(grad)
        if a.ndim > 2 and b.ndim == 2:  # fold the stack of rows, as forward does
            grad, a_rows = grad.reshape(-1, grad.shape[-1]), a.reshape(-1, a.shape[-1])  # (rows, N), (rows, K)
            ga, gb = _gradients(need_a, need_b, (grad, b.T), (a_rows.T, grad))
            return (None if ga is None else ga.reshape(a.shape)), gb
        return _gradients(need_a, need_b, (grad, xp.swapaxes(b, -1, -2)), (xp.swapaxes(a, -1, -2), grad))


class Affine(Function):
    r"""The linear layer $y = x W^\top + b$ in one op, ``weight`` (out, in) as PyTorch stores it.

    From the matmul rule with $B = W^\top$: $\bar x = \bar y\, W$, $\bar W = \bar y^\top x$
    (summed over every leading axis of $x$), $\bar b = \sum_{\text{rows}} \bar y$.

    Composed as ``x @ weight.T + bias`` it gives the same numbers, but the weight's
    gradient would come back as a transposed view and need a strided copy; here
    $\bar y^\top x$ is computed directly in the weight's own layout.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        x2 = x.reshape(-1, x.shape[-1])  # (rows, in)
        y = matrix_product(x2, weight.T, bias)  # (rows, out)
        return y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        g2 = grad.reshape(-1, grad.shape[-1])  # (rows, out)
        gx, gw = _gradients(need_x, need_w, (g2, weight), (g2.T, x.reshape(-1, x.shape[-1])))
        gx = None if gx is None else gx.reshape(x.shape)
        if len(ctx.needs_input_grad) == 2:
            return gx, gw
        return gx, gw, (g2.sum(axis=0) if ctx.needs_input_grad[2] else None)


def _gradients(need_first, need_second, first, second):
    """The products ``first`` and ``second`` (pairs of arrays) where needed, both in one call when both are."""
    if need_first and need_second:
        return matrix_products(*first, *second)
    return (matrix_product(*first) if need_first else None), (matrix_product(*second) if need_second else None)
