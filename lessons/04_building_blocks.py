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
# # Lesson 04 — building blocks, with their derivations
#
# **Needs:** the exercises of lessons 02 and 03 solved first (its tests and code call them).
#
# A GPT is assembled from a handful of pieces: linear maps, a non-linearity
# (GELU), layer normalisation, softmax (inside attention and at the output) and
# the cross-entropy loss. `minitensor` gives each of them a hand-written
# backward pass. In this lesson we derive every one of those backward passes
# with pen and paper, then check the library against the derivation, numerically.
#
# 1. the linear layer $y = xW^\top + b$ and its three gradients, with shapes;
# 2. GELU: the exact form, the tanh form GPT-1 uses, and their derivatives;
# 3. softmax: its Jacobian, and why we subtract the maximum first;
# 4. layer norm: the full backward, and why it keeps training stable;
# 5. softmax + cross-entropy: the famous $p - y$ gradient, and stability with huge or $-\infty$ logits;
# 6. a tiny network built from these blocks, trained with plain SGD.
#
# Notation as in the previous lessons: for a scalar loss $L$, $\bar x$ is
# $\partial L / \partial x$, an array of the same shape as $x$. A backward pass
# receives $\bar y$ and returns $\bar x = \sum_i \bar y_i\, \partial y_i / \partial x$.
#
# The derivations also live in the docstrings of the library's op classes
# (the single source); we print them here rather than copy them.

# %%
import inspect
import textwrap

import numpy as np

import minitensor as mt
import minitensor.functional as F
from minitensor.ops.nn import CrossEntropy, LayerNorm, Softmax, layer_norm_dx
from minitensor.ops.unary import GELUErf, GELUTanh

# Run every op on its formula, the code this lesson reads (and your exercises), never on a
# faster kernel that would stand in for it: see "Where the speed comes from" at the end.
mt.kernels.set_mode("reference")

np.set_printoptions(precision=4, suppress=True)


def show(obj, source=False):
    """Print a library object's docstring (or its source code) under a title."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    print(f"--- {name} ({'source' if source else 'docstring'}) ---")
    print(textwrap.dedent(inspect.getsource(obj)) if source else inspect.getdoc(obj))


def max_abs_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


# %% [markdown]
# ## 1. The linear layer
#
# A batch of $N$ input rows $x \in \mathbb R^{N \times I}$, a weight
# $W \in \mathbb R^{K \times I}$ (stored as (out, in), as in PyTorch) and a
# bias $b \in \mathbb R^{K}$ give $y = xW^\top + b \in \mathbb R^{N \times K}$. In indices,
#
# $$
# y_{nk} = \sum_{i} x_{ni} W_{ki} + b_k .
# $$
#
# Differentiate one output entry with respect to one entry of each input:
#
# $$
# \frac{\partial y_{nk}}{\partial x_{mj}} = [n = m]\, W_{kj}, \qquad
# \frac{\partial y_{nk}}{\partial W_{lj}} = [k = l]\, x_{nj}, \qquad
# \frac{\partial y_{nk}}{\partial b_{l}} = [k = l] .
# $$
#
# Sum $\bar y_{nk}$ times these over all outputs $(n, k)$; the brackets
# collapse one of the two sums each time:
#
# $$
# \bar x_{mj} = \sum_k \bar y_{mk} W_{kj}, \qquad
# \bar W_{lj} = \sum_n \bar y_{nl}\, x_{nj}, \qquad
# \bar b_l = \sum_n \bar y_{nl},
# $$
#
# that is, as matrices,
#
# $$
# \underbrace{\bar x}_{N \times I} = \underbrace{\bar y}_{N \times K}\, \underbrace{W}_{K \times I}, \qquad
# \underbrace{\bar W}_{K \times I} = \underbrace{\bar y^\top}_{K \times N}\, \underbrace{x}_{N \times I}, \qquad
# \underbrace{\bar b}_{K} = \sum_{n} \bar y_{n,:} .
# $$
#
# A handy memory aid: each gradient has the shape of its variable, and there
# is exactly one way to multiply $\bar y$ with the *other* factor to get that
# shape. The bias was broadcast over the $N$ rows in the forward pass, so its
# gradient sums over them. With extra leading axes, $x$ of shape $(B, T, I)$,
# the same formulas hold with the sums over $n$ running over all $B \cdot T$ rows.
#
# `mt.nn.Linear` could simply compute `x @ self.weight.T + self.bias`: the
# matmul, transpose and add ops would derive all three gradients, the bias sum
# coming from the engine's one rule for undoing broadcasting (lesson 02). It
# calls `F.linear` instead, one op (`Affine`) whose backward is exactly the three
# formulas above. The numbers are the same; the difference is memory layout:
# through `weight.T` the matmul would compute the $I \times K$ product
# $x^\top \bar y$ and hand the weight its transpose, a strided view, while
# `Affine` computes $\bar y^\top x$ directly in the weight's own $K \times I$ layout (`benchmarks/overhead.py` measures the difference).

# %%
show(mt.nn.Linear)
show(mt.ops.linalg.Affine)

rng = np.random.default_rng(0)
N, I, K = 5, 4, 3
layer = mt.nn.Linear(I, K, rng=rng, dtype=np.float64)
x = mt.tensor(rng.standard_normal((N, I)), requires_grad=True)
y = layer(x)
ybar = rng.standard_normal((N, K))  # any upstream gradient will do
y.backward(ybar)

W = layer.weight.numpy()
linear_check = {
    "x": (x.grad, ybar @ W),
    "weight": (layer.weight.grad, ybar.T @ x.numpy()),
    "bias": (layer.bias.grad, ybar.sum(axis=0)),
}
for name, (autograd, by_hand) in linear_check.items():
    print(f"d/d{name:6s} shape {autograd.shape}:  |autograd - formula| = {max_abs_diff(autograd, by_hand):.1e}")

# %% [markdown]
# ## 2. GELU
#
# The Gaussian Error Linear Unit weights its input by the probability that a
# standard normal variable is below it:
#
# $$
# \mathrm{GELU}(x) = x\,\Phi(x), \qquad
# \Phi(x) = \tfrac12\Big(1 + \operatorname{erf}\big(x/\sqrt2\big)\Big), \qquad
# \varphi(x) = \Phi'(x) = \frac{e^{-x^2/2}}{\sqrt{2\pi}} .
# $$
#
# For large positive $x$, $\Phi \to 1$ and GELU is the identity; for large
# negative $x$ it is $0$; in between it is smooth, and dips slightly below zero
# (minimum about $-0.17$ near $x \approx -0.75$). Unlike ReLU it has no kink, and
# it lets small negative inputs pass a little gradient. By the product rule,
#
# $$
# \frac{d}{dx}\,\mathrm{GELU}(x) = \Phi(x) + x\,\varphi(x) .
# $$
#
# Hendrycks & Gimpel, who proposed GELU (2016), also gave a cheaper
# approximation of $\Phi$ by a tanh, and that is the form GPT-1 uses (as do BERT
# and GPT-2). The sigmoid-like
# $\tfrac12(1 + \tanh(kx))$ has slope $k/2$ at $0$; matching $\Phi'(0) = 1/\sqrt{2\pi}$
# gives $k = \sqrt{2/\pi}$, and a cubic term fitted numerically,
# $c = 0.044715$, corrects the tails:
#
# $$
# \mathrm{GELU}_{\tanh}(x) = \tfrac12\, x\,\big(1 + \tanh u\big), \qquad
# u = k\,(x + c\,x^3), \quad k = \sqrt{2/\pi}, \quad c = 0.044715 .
# $$
#
# With $t = \tanh u$, product rule plus chain rule (and $\tanh' = 1 - \tanh^2$):
#
# $$
# \frac{d}{dx}\,\mathrm{GELU}_{\tanh}(x)
#   = \tfrac12\,(1 + t) + \tfrac12\, x\,(1 - t^2)\, k\,(1 + 3 c x^2) .
# $$
#
# Both forward passes save what the backward needs ($x$ and $t$, or $x$ and
# $\Phi$), so the backward costs one polynomial, no new `tanh`/`erf`.
# Below: the two forms differ by less than $5 \cdot 10^{-4}$ everywhere, and
# autograd agrees with the formula above and with central differences.

# %%
show(GELUTanh)
show(GELUErf)

grid = np.linspace(-6.0, 6.0, 1201)
approx = F.gelu(mt.tensor(grid), approximate="tanh").numpy()
exact = F.gelu(mt.tensor(grid), approximate="none").numpy()
worst = int(np.argmax(np.abs(approx - exact)))
gelu_gap = max_abs_diff(approx, exact)
print(f"max |GELU_tanh - GELU_exact| on [-6, 6] = {gelu_gap:.2e} (at x = {grid[worst]:+.2f})")


def gelu_tanh_formula(x):
    """GELU_tanh and its derivative, written out from the formulas above (NumPy)."""
    k, c = np.sqrt(2.0 / np.pi), 0.044715
    t = np.tanh(k * (x + c * x**3))
    return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x)


xs = mt.tensor(grid, requires_grad=True)
F.gelu(xs, approximate="tanh").sum().backward()  # d(sum)/dx_i = GELU'(x_i)
value, slope = gelu_tanh_formula(grid)
h = 1e-6
finite_diff = (gelu_tanh_formula(grid + h)[0] - gelu_tanh_formula(grid - h)[0]) / (2 * h)
print(f"forward:   |library - formula|           = {max_abs_diff(approx, value):.1e}")
print(f"backward:  |autograd - formula|          = {max_abs_diff(xs.grad, slope):.1e}")
print(f"backward:  |autograd - central diff.|    = {max_abs_diff(xs.grad, finite_diff):.1e}")

# %% [markdown]
# ## 3. Softmax
#
# Softmax turns a vector of scores (logits) $x \in \mathbb R^C$ into a
# probability vector:
#
# $$
# y_i = \frac{e^{x_i}}{S}, \qquad S = \sum_{k=1}^{C} e^{x_k} .
# $$
#
# ### The Jacobian
#
# Every output depends on every input through $S$, with $\partial S / \partial x_j = e^{x_j}$.
# The quotient rule gives
#
# $$
# \frac{\partial y_i}{\partial x_j}
#   = \frac{[i = j]\, e^{x_i}\, S - e^{x_i}\, e^{x_j}}{S^2}
#   = y_i\,\big([i = j] - y_j\big),
# \qquad\text{i.e.}\qquad
# J = \operatorname{diag}(y) - y\,y^\top .
# $$
#
# Three facts to read off: $J$ is symmetric; each column sums to zero
# ($\sum_i y_i = 1$ whatever $x$ is, so no change of $x$ can change that sum); and
# $J\mathbf 1 = y - y \sum_j y_j = 0$, since adding the same constant to every
# logit changes nothing.
#
# A backward pass never needs the $C \times C$ matrix, only its product with
# $\bar y$, which costs $O(C)$:
#
# $$
# \bar x_j = \sum_i \bar y_i\, y_i\,([i = j] - y_j)
#          = y_j \Big(\bar y_j - \sum_i \bar y_i\, y_i\Big) .
# $$
#
# That line is the whole of `Softmax.backward`, shown below. The exercise is
# to build the full Jacobian anyway (for a batch of vectors at once: $y$ of
# shape $(\ldots, C)$ gives $J$ of shape $(\ldots, C, C)$), so that we can test
# the three facts and the backward pass against it.

# %%
show(Softmax.backward, source=True)


def softmax_jacobian(y):
    r"""The softmax Jacobian $J_{ij} = \partial y_i / \partial x_j = y_i([i=j] - y_j)$
    from the softmax *output* ``y`` (NumPy, shape (..., C)); returns shape (..., C, C)."""
    # BEGIN SOLUTION lesson 04: softmax_jacobian: the Jacobian of section 3 for a whole batch, shape (..., C, C), without loops
    eye = np.eye(y.shape[-1], dtype=y.dtype)
    J = y[..., :, None] * (eye - y[..., None, :])  # row i, column j
    return J
    # END SOLUTION


def softmax_np(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


logits = rng.standard_normal(4)
probs = softmax_np(logits)
J = softmax_jacobian(probs)
print("J =\n", J)
print(f"symmetric: {np.allclose(J, J.T)},  column sums ~ 0: {np.allclose(J.sum(axis=0), 0)},  "
      f"J @ 1 ~ 0: {np.allclose(J @ np.ones(4), 0)}")

# column j of J is dy/dx_j: compare with central differences
J_fd = np.stack([(softmax_np(logits + h * e) - softmax_np(logits - h * e)) / (2 * h) for e in np.eye(4)], axis=1)
print(f"|J - central differences| = {max_abs_diff(J, J_fd):.1e}")

# the backward pass is the product J^T ybar (= J ybar, J being symmetric)
xt = mt.tensor(logits, requires_grad=True)
ybar = rng.standard_normal(4)
F.softmax(xt).backward(ybar)
print(f"|Softmax.backward - J^T ybar| = {max_abs_diff(xt.grad, J.T @ ybar):.1e}")

# %% [markdown]
# ### The max shift
#
# Multiplying numerator and denominator by $e^{-c}$ shows that softmax does not
# see a constant added to all logits:
#
# $$
# \frac{e^{x_i - c}}{\sum_k e^{x_k - c}} = \frac{e^{-c}\, e^{x_i}}{e^{-c} \sum_k e^{x_k}} = y_i .
# $$
#
# Choosing $c = \max_k x_k$ makes every exponent $\le 0$, so no $e^{x}$ can
# overflow, and the largest term is exactly $e^0 = 1$, so $S \ge 1$: no
# division by zero and, later, no $\log 0$. Without the shift, float64 overflows
# at $e^{710}$ (float32 at $e^{89}$), and $\infty / \infty$ is NaN. Logits of
# $-\infty$ (how attention hides future positions from a GPT) are fine with
# the shift: $e^{-\infty} = 0$, a probability of exactly zero.

# %%
big = np.array([1000.0, 999.0, -np.inf])
with np.errstate(over="ignore", invalid="ignore"):  # the naive version overflows on purpose
    naive = np.exp(big) / np.exp(big).sum()
stable = F.softmax(mt.tensor(big)).numpy()
print("logits           ", big)
print("naive exp / sum  ", naive)
print("shifted (library)", stable)

# %% [markdown]
# ## 4. Layer normalisation
#
# Layer norm rescales each row (each token's feature vector) to mean $0$ and
# variance $1$ across its $n$ features, then applies a learned per-feature gain
# $w$ and bias $b$:
#
# $$
# \mu = \frac1n \sum_i x_i, \qquad
# \sigma^2 = \frac1n \sum_i (x_i - \mu)^2, \qquad
# r = (\sigma^2 + \epsilon)^{-1/2}, \qquad
# \hat x_i = (x_i - \mu)\, r, \qquad
# y_i = w_i\, \hat x_i + b_i .
# $$
#
# ($\epsilon = 10^{-5}$ keeps $r$ finite for a constant row.)
#
# ### The backward pass
#
# The easy part first. $\bar b_i = \bar y_i$ and $\bar w_i = \bar y_i\, \hat x_i$
# for one row; the gain and bias are shared by all rows (broadcast), so the
# engine sums these over rows. Going into the normalisation, write
#
# $$
# g_i = \frac{\partial L}{\partial \hat x_i} = \bar y_i\, w_i .
# $$
#
# Now the Jacobian of $\hat x$. Every $\hat x_i$ depends on every $x_j$ three
# ways: directly, through $\mu$, and through $r$. The pieces:
#
# $$
# \frac{\partial \mu}{\partial x_j} = \frac1n, \qquad
# \frac{\partial \sigma^2}{\partial x_j}
#   = \frac2n \sum_i (x_i - \mu)\Big([i = j] - \frac1n\Big)
#   = \frac2n (x_j - \mu),
# $$
#
# (the $-\frac1n$ part drops out because $\sum_i (x_i - \mu) = 0$), hence
#
# $$
# \frac{\partial r}{\partial x_j}
#   = -\tfrac12 (\sigma^2 + \epsilon)^{-3/2}\, \frac2n (x_j - \mu)
#   = -\frac{r^3 (x_j - \mu)}{n}
#   = -\frac{r^2\, \hat x_j}{n} .
# $$
#
# Product rule on $\hat x_i = (x_i - \mu)\, r$:
#
# $$
# \frac{\partial \hat x_i}{\partial x_j}
#   = r\Big([i = j] - \frac1n\Big) + (x_i - \mu)\,\frac{\partial r}{\partial x_j}
#   = r\Big([i = j] - \frac1n - \frac{\hat x_i\, \hat x_j}{n}\Big) .
# $$
#
# Finally contract with $g$, $\bar x_j = \sum_i g_i\, \partial \hat x_i / \partial x_j$:
#
# $$
# \boxed{\;\bar x_j = r\Big(g_j - \underbrace{\frac1n \sum_i g_i}_{\text{path through } \mu}
#   - \hat x_j\, \underbrace{\frac1n \sum_i g_i\, \hat x_i}_{\text{path through } \sigma^2}\Big)\;}
# $$
#
# The two subtracted means are the two indirect paths. Forget the first and
# the gradient claims that shifting the row would change the loss; forget the
# second and it claims that scaling the row would. Exactly these two directions
# are removed: $\sum_j \bar x_j = 0$ (because $\sum_j \hat x_j = 0$), and
# $\sum_j \bar x_j \hat x_j = 0$ up to a term of relative size $\epsilon / (\sigma^2 + \epsilon)$
# (because $\frac1n \sum_j \hat x_j^2 = \sigma^2 / (\sigma^2 + \epsilon)$).
#
# This is the second exercise: `layer_norm_dx` in `minitensor/ops/nn.py` returns
# $\bar x$ from `grad` ($\bar y$), `weight` ($w$), `xhat` ($\hat x$) and `rstd` ($r$),
# the boxed formula written as array code. `LayerNorm.forward` saved $\hat x$ and $r$
# for it, so the backward never recomputes the mean and variance.
# Below we compare the fused op with layer norm composed from primitive ops,
# whose gradient autograd derives on its own.

# %%
show(LayerNorm)
show(LayerNorm.backward, source=True)
show(layer_norm_dx, source=True)


def layer_norm_composed(x, weight, bias, eps=1e-5):
    """Layer norm from primitive ops (mean, multiply, power): autograd finds the backward."""
    centred = x - x.mean(axis=-1, keepdims=True)
    var = (centred * centred).mean(axis=-1, keepdims=True)
    return centred * (var + eps) ** -0.5 * weight + bias


D = 5
ln_inputs = [rng.standard_normal((3, D)) * 2 + 1, 1 + 0.1 * rng.standard_normal(D), 0.1 * rng.standard_normal(D)]
ybar = rng.standard_normal((3, D))
ln_grads = {}
for name, fn in (("fused", F.layer_norm), ("composed", layer_norm_composed)):
    leaves = [mt.tensor(a, requires_grad=True) for a in ln_inputs]
    out = fn(*leaves)
    out.backward(ybar)
    ln_grads[name] = [out.numpy()] + [t.grad for t in leaves]
for what, a, b in zip(("output", "dx", "dweight", "dbias"), ln_grads["fused"], ln_grads["composed"]):
    print(f"{what:8s} |fused - composed| = {max_abs_diff(a, b):.1e}")

dx = ln_grads["fused"][1]
xhat = F.layer_norm(mt.tensor(ln_inputs[0])).numpy()
along_mu = np.abs(dx.sum(axis=-1)).max()
along_sigma = np.abs((dx * xhat).sum(axis=-1)).max()
print(f"largest |sum_j dx_j| over the rows (the mu direction):              {along_mu:.1e}")
print(f"largest |sum_j dx_j xhat_j| over the rows (the sigma direction, ~eps): {along_sigma:.1e}")

# %% [markdown]
# ### Why it stabilises training
#
# *Forward:* whatever the layers before it do to the scale of a row, the layer
# after it sees features of mean $0$ and variance $1$ (times the learned gain).
# $\mathrm{LN}(a x + c) = \mathrm{LN}(x)$ for any $a > 0$ and constant $c$ (up to
# $\epsilon$). In a deep stack, small gains multiply: without normalisation
# activations grow or shrink geometrically with depth, and so do gradients.
#
# *Backward:* from the boxed formula, $\bar x \propto r = 1/\sigma$: if a row's
# scale doubles, its gradient halves. Weights that blow up activations get
# smaller gradients, so the normalised network tends to correct itself instead
# of running away. (GPT-1 applies LayerNorm after each residual sublayer, as in
# the Transformer: $\mathrm{LayerNorm}(x + \mathrm{Sublayer}(x))$.)
#
# The demo: 30 random linear layers with weights slightly too large, with and
# without a layer norm after each.

# %%
width, depth = 64, 30
stack = [rng.standard_normal((width, width)) * 1.25 / np.sqrt(width) for _ in range(depth)]  # gain 1.25 per layer
x0 = mt.tensor(rng.standard_normal((8, width)))
plain, normed = x0, x0
print("layer   std without LN   std with LN")
for depth_i, Wi in enumerate(stack, start=1):
    plain = plain @ mt.tensor(Wi)
    normed = F.layer_norm(normed @ mt.tensor(Wi))
    if depth_i % 10 == 0:
        print(f"{depth_i:5d}   {plain.numpy().std():14.4g}   {normed.numpy().std():11.4f}")

x_1 = mt.tensor(ln_inputs[0], requires_grad=True)
x_100 = mt.tensor(100.0 * ln_inputs[0], requires_grad=True)
for t in (x_1, x_100):
    F.layer_norm(t).backward(ybar)
print(f"|LN(100 x) - LN(x)| = {max_abs_diff(F.layer_norm(x_100).numpy(), F.layer_norm(x_1).numpy()):.1e};  "
      f"gradient ratio |d/dx at 100x| / |d/dx at x| = {np.abs(x_100.grad).sum() / np.abs(x_1.grad).sum():.4f}")

# %% [markdown]
# ## 5. Softmax + cross-entropy: the $p - y$ gradient
#
# A classifier outputs logits $z \in \mathbb R^C$; with $p = \mathrm{softmax}(z)$
# and the correct class $t$, the loss of one example is the negative
# log-likelihood of the truth. Substituting the softmax and simplifying the log
# of a quotient:
#
# $$
# \ell = -\log p_t = -\log \frac{e^{z_t}}{\sum_j e^{z_j}} = -z_t + \log \sum_j e^{z_j} .
# $$
#
# Differentiate directly. The first term gives $-[j = t]$, the second a softmax:
#
# $$
# \frac{\partial \ell}{\partial z_j} = -[j = t] + \frac{e^{z_j}}{\sum_k e^{z_k}} = p_j - y_j ,
# $$
#
# with $y$ the one-hot vector of $t$. The same result through the chain rule and
# the softmax Jacobian of section 3, writing $\ell = -\sum_i y_i \log p_i$:
#
# $$
# \frac{\partial \ell}{\partial z_j}
#   = \sum_i \Big(-\frac{y_i}{p_i}\Big)\, p_i\,([i = j] - p_j)
#   = -y_j + p_j \sum_i y_i = p_j - y_j .
# $$
#
# The $1/p_i$ of the log and the $p_i$ of the Jacobian cancel: that is why the
# fused op is both cheaper and safer than `log(softmax(z))` done in two steps,
# where a $p_i$ that underflows to $0$ gives $\log 0 = -\infty$ and $0 \cdot \infty = $ NaN.
# The gradient is bounded, $p_j - y_j \in [-1, 1]$, and sums to $0$ over classes.
#
# For a batch, the loss is the mean of $N$ rows (the rows that count, when some
# targets are ignored), so each row's gradient is divided by $N$:
#
# $$
# L = \frac1N \sum_{n=1}^{N} \ell_n, \qquad \frac{\partial L}{\partial z_{nj}} = \frac{p_{nj} - y_{nj}}{N} .
# $$
#
# The forward pass uses the shifted form $\log\sum_j e^{z_j} = m + \log\sum_j e^{z_j - m}$
# with $m = \max_j z_j$, for the reason of section 3.
# This is the first exercise: the one-hot part of `CrossEntropy.backward`.

# %%
show(CrossEntropy)
show(CrossEntropy.backward, source=True)

N, C = 6, 4
z = mt.tensor(rng.standard_normal((N, C)), requires_grad=True)
targets = rng.integers(0, C, size=N)
loss = F.cross_entropy(z, targets)
loss.backward()
one_hot = np.eye(C)[targets]
ce_expected = (softmax_np(z.numpy()) - one_hot) / N
print(f"loss = {loss.item():.4f};  |dL/dz - (p - y)/N| = {max_abs_diff(z.grad, ce_expected):.1e}")

# the same loss composed from primitives (max-shift, exp, sum, log), differentiated by autograd
z2 = mt.tensor(z.numpy(), requires_grad=True)
shifted = z2 - mt.tensor(z.numpy().max(axis=-1, keepdims=True))
log_p = shifted - shifted.exp().sum(axis=-1, keepdims=True).log()
composed = -(log_p * mt.tensor(one_hot)).sum() / N
composed.backward()
print(f"composed loss = {composed.item():.4f};  |fused grad - composed grad| = {max_abs_diff(z.grad, z2.grad):.1e}")

# %% [markdown]
# ### Huge and infinite logits
#
# With logits $(1000, 0, -1000)$ and target class $2$, the loss is
# $-(-1000) + \log(e^{1000} + e^0 + e^{-1000}) = 2000$ to within $e^{-1000}$.
# The naive two-step computation overflows; the fused op gets it right, and its
# gradient $p - y = (1, 0, -1)$ is as tame as ever. A logit of $-\infty$ on a
# wrong class is harmless; on the true class the probability is exactly $0$,
# the loss is $+\infty$, and the gradient is still finite.

# %%
rows = np.array([[1000.0, 0.0, -1000.0],
                 [2.0, -np.inf, 0.5],
                 [-np.inf, 1.0, 0.0]])
row_targets = np.array([2, 0, 0])
with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
    naive_p = np.exp(rows) / np.exp(rows).sum(axis=-1, keepdims=True)
    naive_nll = -np.log(naive_p[np.arange(3), row_targets])
zt = mt.tensor(rows, requires_grad=True)
stable_nll = F.cross_entropy(zt, row_targets, reduction="none")
stable_nll.sum().backward()
for i in range(3):
    print(f"logits {rows[i]}  target {row_targets[i]}:  naive {naive_nll[i]:8.4g}   fused {stable_nll.numpy()[i]:8.4g}"
          f"   grad {zt.grad[i]}")

# %% [markdown]
# ## 6. A tiny network from these blocks
#
# Three classes of 2-D points on concentric rings: no straight line separates
# them, so the model needs its non-linearity. The model is
#
# $$
# \text{logits} = \mathrm{Linear}_2\Big(\mathrm{LayerNorm}\big(\mathrm{GELU}(\mathrm{Linear}_1(x))\big)\Big),
# $$
#
# trained on the mean cross-entropy with plain gradient descent,
# $\theta \leftarrow \theta - \eta\, \partial L / \partial \theta$
# (`mt.optim.SGD`; the next lesson is about better optimizers). Every
# gradient in it comes from a backward pass derived above.
#
# The learning rate $\eta = 0.1$ is about the largest at which the loss falls
# at every step here. Try `train_tiny(lr=0.3)`: the loss jumps back up a few
# times before it settles. Lesson 05 is about steps that behave better.


# %%
def make_rings(n_per_class, rng, n_classes=3, noise=0.12):
    """Points on rings of radius 0.5, 1.5, 2.5 (one per class) with Gaussian radial noise, scaled by 1/3."""
    labels = np.repeat(np.arange(n_classes), n_per_class)
    radius = 0.5 + labels + noise * rng.standard_normal(labels.size)
    angle = rng.uniform(0.0, 2 * np.pi, labels.size)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1) / n_classes
    return points.astype(np.float32), labels


class TinyClassifier(mt.nn.Module):
    def __init__(self, hidden, n_classes, rng):
        self.fc1 = mt.nn.Linear(2, hidden, rng=rng)
        self.act = mt.nn.GELU()  # the tanh form, as GPT-1
        self.norm = mt.nn.LayerNorm(hidden)
        self.fc2 = mt.nn.Linear(hidden, n_classes, rng=rng)

    def forward(self, x):
        return self.fc2(self.norm(self.act(self.fc1(x))))


def train_tiny(steps=200, lr=0.1, seed=0):
    """Full-batch SGD on the rings; returns (model, data, labels, loss per step)."""
    rng = np.random.default_rng(seed)
    points, labels = make_rings(100, rng)
    model = TinyClassifier(16, 3, rng)
    opt = mt.optim.SGD(model.parameters(), lr=lr)
    data = mt.tensor(points)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(data), labels)
        opt.zero_grad()  # gradients accumulate: clear the previous step's
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, data, labels, losses


model, data, labels, losses = train_tiny()
for step in (0, 50, 100, 150, len(losses) - 1):
    print(f"step {step:3d}  loss {losses[step]:.4f}")
with mt.no_grad():
    accuracy = float((model(data).numpy().argmax(axis=-1) == labels).mean())
print(f"training accuracy {accuracy:.1%}  (chance: 33%)")
print(model)

# %% [markdown]
# ## Exercises
#
# In the student copy three regions raise `NotImplementedError`; the lesson
# stops at the first one it meets, so do them in this order. Use the derivation
# above each one:
#
# 1. **`softmax_jacobian(y)`** (section 3), in this file: the $(\ldots, C, C)$
#    matrix $y_i([i = j] - y_j)$ for a batch of probability vectors. No loops:
#    `y[..., :, None]` is a column, `y[..., None, :]` a row.
# 2. **Layer norm's backward** (section 4), in `layer_norm_dx` in
#    `minitensor/ops/nn.py`: return the boxed formula, from `grad`, `weight`,
#    `xhat` and `rstd`. Means over the last axis with `keepdims=True`
#    broadcast correctly.
# 3. **Cross-entropy's gradient** (section 5), in `CrossEntropy.backward` in the
#    same file: set `d` to $p - y$ for every row, where `p` has shape
#    $(\ldots, C)$ and the targets `ctx.targets` have shape $(\ldots)$. Build the
#    one-hot $y$ without a Python loop (compare `xp.arange(C)` with the targets,
#    broadcast). The lines after the region already handle the mean's $1/N$,
#    ignored rows and the upstream gradient.
#
# When everything is in place, the comparisons above print differences around
# $10^{-16}$ and the tiny network classifies the rings.
#
# If you want more: write the backward of the *exact* GELU yourself and check it
# against `GELUErf` with `mt.testing.gradcheck`; then try the tiny network with
# `mt.nn.ReLU()` instead of GELU, and without the layer norm.
#
# The tests of the two library exercises call the library directly, so each
# can be checked on its own: `pytest -m lesson04 -k layer_norm`, `-k cross_entropy`.
# The tests of `softmax_jacobian` and of the demos run the whole lesson.
#
# Check your work with `pytest -m lesson04 -x` (from the repository's root; `-x` stops at the first failure).
#
# ## Where the speed comes from
#
# The ops you just read and wrote are the formulas, and with
# `MINITENSOR_KERNELS=reference` they are all that runs. By default some of them are
# replaced by a faster **kernel** that computes the same numbers in another way:
# layer norm, its backward, GELU and dropout run on blocks of rows small enough to
# stay in the CPU's cache, shared between the cores, writing in place into reused
# buffers. The formula marks this with `@kernels.replaceable("layer_norm_dx")`; the
# kernel lives in `minitensor/kernels/cpu.py`, and a test checks that each kernel
# gives its formula's numbers. The lesson's tests run your formula, never the kernel.
