# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 02 — tensors, vector-Jacobian products and broadcasting
#
# **Needs:** no earlier exercise: a fresh student copy can start here.
#
# Lesson 01 differentiated programs made of single numbers. Real networks
# work on arrays: a batch of inputs, a weight matrix, a bias vector. In this
# lesson we move from the scalar `Value` to the `Tensor` of `minitensor`.
# The engine does not change — record each operation, walk the graph in
# reverse topological order, add up contributions — but three new questions
# appear:
#
# 1. **What is "the derivative" of an array-valued op?** A Jacobian matrix,
#    and it is far too large to build. Every backward pass computes a
#    *vector-Jacobian product* instead.
# 2. **How do we differentiate matrix multiplication?** We derive
#    $\bar A = \bar Y B^\top$ and $\bar B = A^\top \bar Y$ from indices and
#    check the shapes.
# 3. **What happens to the gradient when NumPy broadcasts?** A broadcast
#    copies values, so the gradient of a broadcast is a *sum* over the copies.
#    `minitensor` does this in exactly one place, `unbroadcast`, which you
#    write.
#
# At the end you write an op of your own, with its backward, and check it.
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` (here and in
# `minitensor/autograd.py`) is blanked out in the student copy: those are the
# exercises listed at the end.

# %%
import inspect
import textwrap

import numpy as np

import minitensor as mt
from minitensor.backend import get_array_module

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. From `Value` to `Tensor`: the same engine
#
# In lesson 01 every operation created a closure `_backward` that pushed
# $\bar y \cdot \partial y / \partial x$ into its parents. `minitensor` keeps
# the same idea but organises it as **one class per op**, a subclass of
# `mt.Function` with two static methods that work on raw NumPy arrays:
#
# * `forward(ctx, *arrays)` computes the output. Whatever the backward pass
#   will need (inputs, or the output itself) it stores with
#   `ctx.save_for_backward(...)`; other facts (a shape, an axis) go on `ctx`
#   as plain attributes.
# * `backward(ctx, grad)` receives $\bar y$ — an array of the output's shape —
#   and returns one gradient per input (or `None` for an input that needs
#   none; `ctx.needs_input_grad` says which do).
#
# `ctx` plays the role of the closure's captured variables. Here is the
# multiplication op, $y = a \odot b$, straight from the library:

# %%
print(inspect.getsource(mt.ops.arithmetic.Mul))

# %% [markdown]
# `Function.apply` is the glue. It unwraps Tensors into arrays, calls
# `forward`, and — only if some input requires a gradient and we are not
# inside `mt.no_grad()` — remembers the inputs as the node's parents. That
# record *is* the graph; `Tensor.backward()` walks it exactly like lesson 01's
# `backward()` (iteratively, children before parents, accumulating with `+`).

# %%
print(textwrap.dedent(inspect.getsource(mt.Function.apply)))

# %% [markdown]
# A first check, the tensor version of lesson 01's $L = a \cdot a$: for
# $L = \sum_i x_i^2$ we expect $\partial L / \partial x_i = 2 x_i$, entry by
# entry. Note that `x.grad` is an ordinary NumPy array of the same shape as
# `x`.

# %%
x = mt.tensor([1.0, -2.0, 3.0], requires_grad=True)
(x * x).sum().backward()
print("x      =", x.numpy())
print("x.grad =", x.grad, "(expect 2x)")

# %% [markdown]
# ## 2. Jacobians are too big: vector-Jacobian products
#
# Take an op $y = f(x)$ with $x \in \mathbb R^n$ and $y \in \mathbb R^m$
# (flatten the arrays if they have several axes). Its derivative is the
# $m \times n$ Jacobian $J_{ij} = \partial y_i / \partial x_j$. The chain
# rule of lesson 01, with one term per output entry that depends on $x_j$,
# reads
#
# $$
# \bar x_j = \sum_{i=1}^{m} \bar y_i \,\frac{\partial y_i}{\partial x_j}
# \qquad\text{that is}\qquad
# \bar x = J^\top \bar y
# \quad(\text{a row vector } \bar y^\top \text{ times } J).
# $$
#
# This is a **vector-Jacobian product** (VJP). The backward pass never needs
# $J$ itself, only $J^\top \bar y$, and that is lucky: $J$ has $m n$ entries.
# For one activation tensor of a GPT-1-sized model, batch 32, 512 positions,
# 768 features, $n = m \approx 1.3 \times 10^7$:

# %%
n_act = 32 * 512 * 768
bytes_f32 = 4
print(f"entries of the activation:     {n_act:.3g}  ({n_act * bytes_f32 / 2**20:.0f} MiB as float32)")
print(f"entries of its Jacobian:       {n_act**2:.3g}  ({n_act**2 * bytes_f32 / 2**40:,.0f} TiB as float32)")

# %% [markdown]
# Hundreds of tebibytes for one tanh layer, almost all of them zero. Each op
# therefore implements its VJP directly, as a formula that never forms $J$.
# For an elementwise function $y_i = g(x_i)$ the Jacobian is diagonal,
# $J = \operatorname{diag}(g'(x))$, so
#
# $$
# \bar x = J^\top \bar y = g'(x) \odot \bar y ,
# \qquad\text{for } \tanh:\quad \bar x = (1 - y^2) \odot \bar y .
# $$
#
# On a vector small enough to afford it, the explicit Jacobian and the VJP that
# `minitensor` computes agree. `backward(grad=...)` starts the backward pass
# from an arbitrary $\bar y$ instead of the scalar seed $1$ of lesson 01.

# %%
x = mt.tensor(rng.standard_normal(5), requires_grad=True)  # a float64 array stays float64
y = x.tanh()
J = np.diag(1.0 - y.numpy() ** 2)  # 5 x 5, only the diagonal is non-zero
y_bar = rng.standard_normal(5)
y.backward(y_bar)
tanh_vjp_gap = np.abs(x.grad - J.T @ y_bar).max()
print("J^T y_bar       =", J.T @ y_bar)
print("minitensor grad =", x.grad)
print(f"largest difference: {tanh_vjp_gap:.1e}")

# %% [markdown]
# ## 3. The backward of matrix multiplication
#
# Let $Y = AB$ with $A$ of shape $(n, k)$, $B$ of shape $(k, m)$, so $Y$ is
# $(n, m)$ and
#
# $$
# Y_{ij} = \sum_{l=1}^{k} A_{il} B_{lj},
# \qquad
# \frac{\partial Y_{ij}}{\partial A_{pq}} = [i = p]\, B_{qj},
# \qquad
# \frac{\partial Y_{ij}}{\partial B_{pq}} = A_{ip}\, [j = q].
# $$
#
# Put these into the VJP, a sum over every output entry $(i, j)$; the
# indicator kills one of the two sums:
#
# $$
# \bar A_{pq} = \sum_{i,j} \bar Y_{ij}\,[i = p]\, B_{qj} = \sum_{j} \bar Y_{pj} B_{qj} = \big(\bar Y B^\top\big)_{pq},
# \qquad
# \bar B_{pq} = \sum_{i,j} \bar Y_{ij}\, A_{ip}\,[j = q] = \sum_{i} A_{ip} \bar Y_{iq} = \big(A^\top \bar Y\big)_{pq}.
# $$
#
# The shapes are a useful sanity check, and an easy way to remember the
# result: $\bar A$ must have $A$'s shape $(n, k)$, and the only way to get it
# from $\bar Y\,(n, m)$ and $B\,(k, m)$ is $\bar Y B^\top$:
# $(n, m) \cdot (m, k) = (n, k)$. Likewise $\bar B = A^\top \bar Y$ is
# $(k, n) \cdot (n, m) = (k, m)$. The library's `MatMul` says the same in its
# docstring:

# %%
print(inspect.getdoc(mt.ops.linalg.MatMul))

# %% [markdown]
# Let us confirm the formula against the definition, $\bar A = J_A^\top \bar Y$
# with an explicit Jacobian. $Y$ is linear in $A$, so the column of $J_A$
# belonging to $A_{pq}$ is simply $Y$ evaluated at the unit matrix $E_{pq}$
# (a one at $(p, q)$, zeros elsewhere): $\partial Y / \partial A_{pq} = E_{pq} B$.


# %%
def jacobian_wrt_A(B, shape_A):
    """J_A of Y = A @ B: one column per entry of A, each column the flattened E_pq @ B."""
    cols = []
    for pos in np.ndindex(shape_A):
        E = np.zeros(shape_A)
        E[pos] = 1.0
        cols.append((E @ B).ravel())
    return np.stack(cols, axis=1)  # (n*m, n*k)


A_np, B_np = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
Y_bar = rng.standard_normal((2, 4))
J_A = jacobian_wrt_A(B_np, A_np.shape)
A_bar_from_jacobian = (J_A.T @ Y_bar.ravel()).reshape(A_np.shape)

A, B = mt.tensor(A_np, requires_grad=True), mt.tensor(B_np, requires_grad=True)
(A @ B).backward(Y_bar)
matmul_gaps = {
    "J_A^T y_bar vs Y_bar B^T": np.abs(A_bar_from_jacobian - Y_bar @ B_np.T).max(),
    "minitensor A.grad vs Y_bar B^T": np.abs(A.grad - Y_bar @ B_np.T).max(),
    "minitensor B.grad vs A^T Y_bar": np.abs(B.grad - A_np.T @ Y_bar).max(),
}
print("J_A has shape", J_A.shape, "— already 48 numbers for a 2x3 times 3x4 product")
for what, gap in matmul_gaps.items():
    print(f"{what:32s} largest difference {gap:.1e}")

# %% [markdown]
# ## 4. Broadcasting: NumPy's rules
#
# Adding a bias vector to a batch of rows, `X + b` with `X` of shape $(B, D)$
# and `b` of shape $(D,)$, works in NumPy because of *broadcasting*. Two shapes
# are compared from the **right**:
#
# 1. if one shape has fewer axes, it is padded with length-1 axes on the
#    **left** until both have the same number of axes;
# 2. then, axis by axis, the lengths must be equal, or one of them must be
#    $1$; the result takes the larger length, and an operand with length $1$
#    is *stretched*: its single entry is reused at every position of that axis.
#
# So $(4, 3)$ and $(3,)$ give $(4, 3)$ — the bias row is reused for each of the
# 4 rows — while $(4, 3)$ and $(4,)$ do not broadcast at all, because the
# lengths 3 and 4 are compared against each other.

# %%
for s1, s2 in [((4, 3), (3,)), ((4, 1), (1, 5)), ((2, 1, 3), (4, 1)), ((), (2, 3)), ((4, 3), (4,))]:
    try:
        print(f"{str(s1):10s} with {str(s2):8s} -> {np.broadcast_shapes(s1, s2)}")
    except ValueError:
        print(f"{str(s1):10s} with {str(s2):8s} -> error: 3 and 4 are compared, and neither is 1")

# %% [markdown]
# ## 5. Why the backward of broadcasting is a sum
#
# Think of broadcasting as an op of its own, $y = \operatorname{broadcast}(x)$,
# from the input shape $s$ to a larger shape $S$. Each output position $I$
# reads one input position $\pi(I)$: drop the padded leading axes of $I$, and
# replace its index by $0$ on every stretched axis. For `b` of shape $(3,)$
# broadcast to $(4, 3)$, $\pi(r, c) = (c)$. So
#
# $$
# y_I = x_{\pi(I)},
# \qquad
# \frac{\partial y_I}{\partial x_j} = [\pi(I) = j],
# \qquad
# \bar x_j = \sum_I \bar y_I\,[\pi(I) = j] = \sum_{I \,:\, \pi(I) = j} \bar y_I .
# $$
#
# Every copy of $x_j$ influences the loss, and the chain rule adds up the
# influences: **the gradient of a broadcast input is the upstream gradient
# summed over the broadcast axes**. That is the same "accumulate, never
# assign" rule as in lesson 01; a value used in many places receives the sum
# of its contributions, here the copies made by broadcasting.
#
# Now any binary op $z = g(a, b)$ on broadcast inputs is really
# $z = g(\operatorname{broadcast}(a), \operatorname{broadcast}(b))$, two ops in
# a row. Its backward is therefore: first $g$'s own VJP, which gives gradients
# of the **output's** shape, then the sum above, which brings each one back to
# its input's shape.
#
# The definition turns directly into a slow, obviously correct loop: visit
# every entry of $\bar y$ and add it into the input entry it was copied from.


# %%
def unbroadcast_by_loops(grad, shape):
    """Sum grad (of the broadcast shape) back to `shape`, one entry at a time."""
    out = np.zeros(shape)
    lead = grad.ndim - len(shape)  # axes that broadcasting padded on the left
    for I in np.ndindex(grad.shape):
        source = tuple(0 if n == 1 else i for i, n in zip(I[lead:], shape))  # pi(I)
        out[source] += grad[I]
    return out


# %% [markdown]
# ### The one place `minitensor` undoes broadcasting
#
# A loop over every entry is far too slow, and writing a sum into every op's
# backward would repeat the same few lines in `Add`, `Mul`, `Maximum`, `Where`,
# `MatMul`... and sooner or later one copy would be wrong. So in `minitensor`
# an op's backward may return gradients of the *output's* shape, and the
# engine fixes the shape once, when it hands a gradient to a parent:

# %%
engine_lines = inspect.getsource(mt.autograd.backward).splitlines()
k = next(i for i, line in enumerate(engine_lines) if "unbroadcast(" in line)
print("\n".join(engine_lines[k - 1:k + 1]))

# %% [markdown]
# `unbroadcast(grad, shape)` does the sum with array operations instead of a
# loop. The two rules of section 4 are undone in reverse:
#
# * the axes padded on the **left** do not exist in $x$ at all: sum $\bar y$
#   over its first $e = \operatorname{ndim}(\bar y) - \operatorname{ndim}(x)$
#   axes, which removes them;
# * a **stretched** axis (length $1$ in $x$, longer in $\bar y$) must stay in
#   the result with length $1$: sum over it with `keepdims=True`.
#
# Here it is (in your copy, the part between the markers is the exercise):

# %%
print(inspect.getsource(mt.autograd.unbroadcast))

# %% [markdown]
# The fast version must agree with the loop on every pair of shapes; here are
# a few, including a 0-d scalar stretched to a matrix.

# %%
unbroadcast_gaps = {}
for small, big in [((3,), (4, 3)), ((4, 1), (4, 3)), ((1, 3), (2, 4, 3)), ((), (2, 3)), ((2, 1, 3), (5, 2, 4, 3))]:
    g = rng.standard_normal(big)
    fast = mt.autograd.unbroadcast(g, small)
    unbroadcast_gaps[small, big] = np.abs(fast - unbroadcast_by_loops(g, small)).max()
    print(f"{str(big):13s} -> {str(small):10s} result shape {np.shape(fast)}, "
          f"difference from the loop {unbroadcast_gaps[small, big]:.1e}")

# %% [markdown]
# ## 6. Worked example: the gradient of a bias is a column sum
#
# A linear layer adds a bias, $Y = X + b$ with $X \in \mathbb R^{B \times D}$
# and $b \in \mathbb R^{D}$, so $Y_{rc} = X_{rc} + b_c$. Say the loss reaches
# $Y$ with upstream gradient $\bar Y = W$. Addition passes $\bar Y$ through
# unchanged, and $b_c$ was copied into all $B$ rows, so by section 5
#
# $$
# \bar X = W, \qquad \bar b_c = \sum_{r=1}^{B} W_{rc}
# \quad\text{(the column sums of } W\text{)} .
# $$
#
# To produce exactly that upstream gradient we use the loss
# $L = \sum_{r,c} W_{rc} Y_{rc}$, whose derivative with respect to $Y$ is $W$.
# A per-row offset of shape $(B, 1)$ is stretched along the *columns*
# instead, so its gradient is the row sums, kept as a column.

# %%
X = mt.tensor(rng.standard_normal((4, 3)), requires_grad=True)
b = mt.tensor(rng.standard_normal(3), requires_grad=True)
row_offset = mt.tensor(rng.standard_normal((4, 1)), requires_grad=True)
W_upstream = rng.standard_normal((4, 3))

L = ((X + b + row_offset) * W_upstream).sum()
L.backward()
bias_grad = b.grad
print("b.grad          =", bias_grad, " shape", bias_grad.shape)
print("column sums of W =", W_upstream.sum(axis=0))
print("row_offset.grad =", row_offset.grad.ravel(), " shape", row_offset.grad.shape)
print("row sums of W    =", W_upstream.sum(axis=1))

# %% [markdown]
# Broadcasting also happens over the batch axes of a matrix product: a
# $(2, 3)$ matrix $A$ times a stack of five $(3, 4)$ matrices uses the same
# $A$ five times. `MatMul.backward` returns $\bar Y B^\top$ of shape
# $(5, 2, 3)$ — one gradient per use — and the engine sums the five.

# %%
A = mt.tensor(rng.standard_normal((2, 3)), requires_grad=True)
B_stack = mt.tensor(rng.standard_normal((5, 3, 4)), requires_grad=True)
Y_bar = rng.standard_normal((5, 2, 4))
(A @ B_stack).backward(Y_bar)
per_use = Y_bar @ np.swapaxes(B_stack.numpy(), -1, -2)  # (5, 2, 3)
batched_matmul_gap = np.abs(A.grad - per_use.sum(axis=0)).max()
print("A.grad shape", A.grad.shape, "; difference from the sum of the five uses:", f"{batched_matmul_gap:.1e}")

# %% [markdown]
# ## 7. Writing your own op: softplus
#
# Softplus is a smooth version of ReLU:
#
# $$
# y = \operatorname{softplus}(x) = \log(1 + e^x),
# \qquad
# \frac{dy}{dx} = \frac{e^x}{1 + e^x} = \frac{1}{1 + e^{-x}} = \sigma(x) .
# $$
#
# It is elementwise, so its VJP is $\bar x = \sigma(x) \odot \bar y$
# (section 2). Two numerical details matter more than the calculus:
#
# * $e^x$ overflows for $x \gtrsim 710$ in float64 (and $x \gtrsim 89$ in
#   float32), although $\log(1 + e^x) \approx x$ is perfectly representable.
#   Factor out the larger term: for $x > 0$,
#   $\log(1 + e^x) = \log\big(e^x (e^{-x} + 1)\big) = x + \log(1 + e^{-x})$, so in general
#   $$ \operatorname{softplus}(x) = \max(x, 0) + \log\big(1 + e^{-|x|}\big), $$
#   where the exponent is never positive. `log1p` computes $\log(1 + t)$
#   accurately for tiny $t$.
# * $\sigma(x) = 1/(1 + e^{-x})$ overflows in $e^{-x}$ for very negative $x$.
#   The identity $\sigma(x) = \tfrac12\big(1 + \tanh\tfrac x2\big)$ never does.
#
# The op asks the backend for its array module `xp` instead of importing
# NumPy, so the same class would also run on CuPy arrays (that is how every op
# in `minitensor/ops/` is written).


# %%
class Softplus(mt.Function):
    r"""$y = \log(1 + e^x)$: $\bar x = \sigma(x)\,\bar y$."""

    @staticmethod
    def forward(ctx, x):
        xp = get_array_module(x)
        ctx.save_for_backward(x)
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        sigma = 0.5 * (1 + get_array_module(x).tanh(0.5 * x))
        return grad * sigma


def softplus(x):
    return Softplus.apply(x)


big = np.array([-800.0, -1.0, 0.0, 1.0, 800.0])
with np.errstate(over="ignore"):  # the naive formula overflows; that is the point
    print("naive log(1 + e^x):", "  ".join(f"{v:8.4f}" for v in np.log(1 + np.exp(big))))
print("Softplus          :", "  ".join(f"{v:8.4f}" for v in softplus(mt.tensor(big)).numpy()))

# %% [markdown]
# ### Checking the new op
#
# A new backward is guilty until proven innocent. Two checks:
#
# * against its **composed twin** $\log(1 + e^x)$ built from `exp`, `+` and
#   `log`, whose gradient autograd derives from ops we already trust (for
#   moderate $x$, where the naive formula is fine);
# * against **finite differences**, as in lesson 01. For a tensor input we
#   look along a random direction $d$: the function $t \mapsto s(x + t d)$ of
#   one variable has derivative $\langle \nabla s(x), d \rangle$ at $t = 0$, so
#   $$ \frac{s(x + \epsilon d) - s(x - \epsilon d)}{2\epsilon} \approx \langle \nabla s(x), d\rangle , $$
#   where $s$ is the sum of the outputs weighted by random numbers.
#   `mt.testing.directional_check` does this for a few directions and raises
#   if the two sides disagree. Lesson 03 explains how to pick $\epsilon$, why
#   we compute in float64, and checks every entry instead of a few directions.

# %%
x_np = rng.standard_normal((3, 4)) * 3
x1, x2 = mt.tensor(x_np, requires_grad=True), mt.tensor(x_np, requires_grad=True)
w = rng.standard_normal((3, 4))
(softplus(x1) * w).sum().backward()
((1 + x2.exp()).log() * w).sum().backward()
softplus_twin_gap = np.abs(x1.grad - x2.grad).max()
print(f"Softplus vs composed log(1 + exp(x)): gradients differ by {softplus_twin_gap:.1e}")
print("directional check passed:", mt.testing.directional_check(softplus, mt.tensor(x_np, requires_grad=True)))

# %% [markdown]
# ## 8. Your turn: an op with two broadcasting inputs
#
# The Euclidean length of the pair $(a, b)$, elementwise:
#
# $$
# y = \operatorname{hypot}(a, b) = \sqrt{a^2 + b^2},
# \qquad
# \frac{\partial y}{\partial a} = \frac{2a}{2\sqrt{a^2 + b^2}} = \frac{a}{y},
# \qquad
# \frac{\partial y}{\partial b} = \frac{b}{y} .
# $$
#
# So $\bar a = \bar y \odot a / y$ and $\bar b = \bar y \odot b / y$ (both
# undefined at $a = b = 0$, the tip of a cone, just as $|x|$ at $0$). The
# inputs may broadcast against each other, e.g. $a$ of shape $(3, 4)$ and $b$
# of shape $(4,)$. **Do not** sum anything in the backward: return gradients of
# the output's shape and let the engine's `unbroadcast` do its job. Return
# `None` for an input whose `ctx.needs_input_grad` entry is False, so no work
# is wasted on it. (`xp.hypot` computes the forward without overflowing in
# $a^2$.)


# %%
class Hypot(mt.Function):
    r"""$y = \sqrt{a^2 + b^2}$: $\bar a = \bar y\, a / y,\ \bar b = \bar y\, b / y$."""

    @staticmethod
    def forward(ctx, a, b):
        y = get_array_module(a, b).hypot(a, b)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, grad):
        a, b, y = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        # BEGIN SOLUTION lesson 02: Hypot.backward: the two partial derivatives in Hypot's docstring, times grad; None for an input that needs none
        grad_a = grad * a / y if need_a else None
        grad_b = grad * b / y if need_b else None
        return grad_a, grad_b
        # END SOLUTION


def hypot(a, b):
    return Hypot.apply(a, b)


# %% [markdown]
# The same two checks as for softplus, now with broadcasting: the composed
# twin $\sqrt{a^2 + b^2}$ and the directional check. Both gradients must come
# back with their input's shape.

# %%
a_np, b_np = rng.standard_normal((3, 4)), rng.standard_normal(4)
w = rng.standard_normal((3, 4))
a1, b1 = mt.tensor(a_np, requires_grad=True), mt.tensor(b_np, requires_grad=True)
a2, b2 = mt.tensor(a_np, requires_grad=True), mt.tensor(b_np, requires_grad=True)
(hypot(a1, b1) * w).sum().backward()
((a2 * a2 + b2 * b2).sqrt() * w).sum().backward()
hypot_twin_gap = max(np.abs(a1.grad - a2.grad).max(), np.abs(b1.grad - b2.grad).max())
print("shapes of the gradients:", a1.grad.shape, b1.grad.shape)
print(f"Hypot vs composed sqrt(a^2 + b^2): gradients differ by {hypot_twin_gap:.1e}")
print("directional check passed:", mt.testing.directional_check(
    hypot, mt.tensor(a_np, requires_grad=True), mt.tensor(b_np, requires_grad=True)))

# %% [markdown]
# ## Exercises
#
# In the student copy two regions raise `NotImplementedError`. Use the
# derivations directly above them:
#
# 1. **`unbroadcast(grad, shape)`** in `minitensor/autograd.py` (section 5):
#    sum `grad` down to `shape`. First sum away the leading axes that
#    broadcasting added, then sum with `keepdims=True` over every axis where
#    `shape` has length 1 but `grad` does not. Without it, nothing from
#    section 5 on can run.
# 2. **`Hypot.backward`** (section 8): return $\bar y \odot a / y$ and
#    $\bar y \odot b / y$, output-shaped, or `None` where no gradient is
#    needed.
#
# When both are done the lesson runs to the end: the fast `unbroadcast` agrees
# with the loop, `b.grad` equals the column sums, and both checks of `Hypot`
# pass.
#
# If you want more: write `Cube`, $y = x^3$ with $\bar x = 3x^2 \bar y$, and
# check it the same way. Then write a binary op that needs *both* its inputs
# and its output in the backward, such as $y = a^b$ for positive $a$ (with
# $\partial y/\partial b = y \log a$), and test it on shapes $(2, 1, 3)$ and
# $(4, 1)$.
#
# Check your work with `pytest -m lesson02 -x` (from the repository's root; `-x` stops at the first failure).
