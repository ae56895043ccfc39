r"""Matrix multiplication."""
from ..autograd import Function
from ..backend import get_array_module


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
        xp = get_array_module(a, b)
        if a.ndim > 2 and b.ndim == 2:
            return xp.matmul(a.reshape(-1, a.shape[-1]), b).reshape(*a.shape[:-1], b.shape[-1])
        return xp.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        xp = get_array_module(grad)
        if a.ndim > 2 and b.ndim == 2:
            g2 = grad.reshape(-1, grad.shape[-1])  # (rows, N)
            ga = xp.matmul(g2, b.T).reshape(a.shape) if need_a else None
            gb = xp.matmul(a.reshape(-1, a.shape[-1]).T, g2) if need_b else None
            return ga, gb
        ga = xp.matmul(grad, xp.swapaxes(b, -1, -2)) if need_a else None
        gb = xp.matmul(xp.swapaxes(a, -1, -2), grad) if need_b else None
        return ga, gb
