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
# # Lesson 03 — gradient checking
#
# **Needs:** the exercises of lesson 02 solved first (its tests and code call them).
#
# The autograd engine is only as good as the backward of each op: the engine
# multiplies and adds whatever the ops hand it, and a wrong backward does not
# crash. It produces gradients that are slightly or completely wrong, the
# network still trains a little, and the bug can go unnoticed for weeks. So
# every op in `minitensor` is checked against the definition of the
# derivative, computed numerically.
#
# That sounds trivial — "perturb the input, see how the output moves" — but
# done naively it is either inaccurate or misleading. In this lesson we
#
# 1. derive the error of forward and central differences from Taylor series;
# 2. add the rounding error of floating point, and find the best step size;
# 3. *measure* both errors, in float32 and float64, and see why gradient checks
#    run in float64;
# 4. define the relative error we compare gradients with;
# 5. see how `mt.testing.gradcheck` checks a whole backward pass with one
#    random weighting of the output, and watch it catch wrong backwards;
# 6. meet the cheaper directional check for big tensors.
#
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` (here and in
# `minitensor/testing.py`) is blanked out in the student copy: those are the
# exercises listed at the end.

# %%
import inspect

import numpy as np

import minitensor as mt
from minitensor.backend import get_array_module

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Truncation error: forward versus central differences
#
# Taylor's theorem around $x$, for a smooth $f$ and a step $h > 0$:
#
# $$
# f(x \pm h) = f(x) \pm h f'(x) + \frac{h^2}{2} f''(x) \pm \frac{h^3}{6} f'''(x) + O(h^4).
# $$
#
# The **forward difference** uses only the $+$ expansion. In
# $f(x + h) - f(x)$ the $\tfrac{h^2}{2} f''$ term remains, and after dividing
# by $h$ it is the leading error:
#
# $$
# D_+ f(x) = \frac{f(x + h) - f(x)}{h} = f'(x) + \frac{h}{2} f''(x) + O(h^2) .
# $$
#
# The **central difference** subtracts the two expansions. The even terms
# ($f(x)$ and $\tfrac{h^2}{2} f''$) appear with the same sign in both and
# cancel, the odd ones double:
#
# $$
# D_0 f(x) = \frac{f(x + h) - f(x - h)}{2h} = f'(x) + \frac{h^2}{6} f'''(x) + O(h^4) .
# $$
#
# The truncation error is $O(h)$ for the forward difference and $O(h^2)$ for the
# central one: shrink $h$ tenfold and the first error shrinks tenfold, the
# second a hundredfold, for the price of one extra function evaluation (two
# instead of one, when $f(x)$ is known anyway).


# %%
def forward_difference(f, x, h):
    """(f(x + h) - f(x)) / h: error O(h)."""
    return (f(x + h) - f(x)) / h


def central_difference(f, x, h):
    """(f(x + h) - f(x - h)) / 2h: error O(h^2)."""
    return (f(x + h) - f(x - h)) / (2 * h)


# %% [markdown]
# ## 2. Rounding error, and the best step
#
# If truncation were the whole story we would take $h$ as small as possible.
# But $f$ is computed in floating point. Every stored number is rounded to the
# nearest float, which moves it by at most a relative $u = \varepsilon_{\text{mach}}/2$,
# where $\varepsilon_{\text{mach}}$ is the gap between $1$ and the next float:
# $2^{-52} \approx 2.2 \times 10^{-16}$ in float64 and
# $2^{-23} \approx 1.2 \times 10^{-7}$ in float32. So the two values we subtract
# are each off by about $u\,|f|$, and the difference quotient divides that
# error by the small number $h$ (or $2h$):
#
# $$
# \text{rounding error} \approx \frac{2 u |f|}{h} \ \text{(forward)},
# \qquad
# \frac{2 u |f|}{2h} = \frac{u |f|}{h} \ \text{(central)} .
# $$
#
# The two errors pull in opposite directions: truncation wants a small $h$,
# rounding a large one. For the central difference the total is
#
# $$
# E_0(h) \approx \frac{h^2}{6} |f'''| + \frac{u |f|}{h},
# \qquad
# E_0'(h) = \frac{h}{3} |f'''| - \frac{u |f|}{h^2} = 0
# \;\Longrightarrow\;
# h_0^* = \left(\frac{3 u |f|}{|f'''|}\right)^{1/3} ,
# $$
#
# and the same computation for the forward difference,
# $E_+(h) \approx \tfrac h2 |f''| + 2u|f|/h$, gives
# $h_+^* = 2 \sqrt{u |f| / |f''|}$. When $f$ and its derivatives have
# similar sizes, $h_0^* \approx \sqrt[3]{3u} \approx \sqrt[3]{\varepsilon_{\text{mach}}}$
# and $h_+^* \approx 2\sqrt{u} \approx \sqrt{2\varepsilon_{\text{mach}}}$. Putting the best
# step back in, both terms are of the same order, and the best achievable relative
# errors are $E_0(h_0^*) = \tfrac12 (3u)^{2/3}$ (central) and
# $E_+(h_+^*) = 2\sqrt u$ (forward), again for $f$ and its derivatives of
# similar size:
#
# | | $u$ | best $h$, central | best error, central | best $h$, forward | best error, forward |
# |---|---|---|---|---|---|
# | float64 | $1.1 \times 10^{-16}$ | $7 \times 10^{-6}$ | $2 \times 10^{-11}$ | $2 \times 10^{-8}$ | $2 \times 10^{-8}$ |
# | float32 | $6 \times 10^{-8}$ | $6 \times 10^{-3}$ | $2 \times 10^{-5}$ | $5 \times 10^{-4}$ | $5 \times 10^{-4}$ |
#
# The central difference wins twice: its best error is smaller, and it is
# reached at a larger, less delicate step.

# %%
predicted_eps = {}
for dtype in (np.float32, np.float64):
    u = float(np.finfo(dtype).eps) / 2
    predicted_eps[dtype.__name__, "central"] = (3 * u) ** (1 / 3)
    predicted_eps[dtype.__name__, "forward"] = 2 * np.sqrt(u)
    print(f"{dtype.__name__}: u = {u:.2e}, best h central ~ {(3 * u) ** (1 / 3):.1e}, "
          f"forward ~ {2 * np.sqrt(u):.1e}")

# %% [markdown]
# ## 3. Measuring it
#
# Take $f = \exp$, whose derivatives are all $e^x$: then the truncation terms
# predict the relative errors $h/2$ (forward) and $h^2/6$ (central) exactly,
# and we can compare theory and measurement line by line. We differentiate at
# 101 points $x \in [0.5, 1.5]$ in the dtype under test and report the
# *median* relative error $|D f(x) - e^x| / e^x$. A single point would give a
# ragged curve: its rounding error depends on how the last bits happen to
# fall; the median over many points shows the typical error.

# %%
EPS_GRID = 10.0 ** -np.arange(1, 13)  # h = 1e-1, 1e-2, ..., 1e-12
X_POINTS = np.linspace(0.5, 1.5, 101)
METHODS = {"forward": forward_difference, "central": central_difference}


def median_relative_error(method, dtype, h):
    x = X_POINTS.astype(dtype)
    exact = np.exp(x.astype(np.float64))  # f' = exp, at the points actually used, in float64
    approx = method(np.exp, x, dtype(h))  # everything in `dtype`
    return float(np.median(np.abs(approx - exact) / exact))


errors = {
    (dtype.__name__, name): np.array([median_relative_error(method, dtype, h) for h in EPS_GRID])
    for dtype in (np.float32, np.float64)
    for name, method in METHODS.items()
}
best_eps = {key: float(EPS_GRID[np.argmin(errs)]) for key, errs in errors.items()}

print(f"{'h':>7s} | {'float32 fwd':>11s} {'float32 cen':>11s} | {'float64 fwd':>11s} {'float64 cen':>11s}"
      f" | {'theory h/2':>10s} {'h^2/6':>8s}")
for k, h in enumerate(EPS_GRID):
    cells = " | ".join(f"{errors[d, 'forward'][k]:11.2e} {errors[d, 'central'][k]:11.2e}" for d in ("float32", "float64"))
    print(f"{h:7.0e} | {cells} | {h / 2:10.1e} {h * h / 6:8.1e}")
for key, h in best_eps.items():
    print(f"best h {key[0]} {key[1]:8s}: measured {h:.0e}, predicted {predicted_eps[key]:.1e}, "
          f"error there {errors[key].min():.1e}")

# %% [markdown]
# Read the table from the top. In float64, for large $h$ the errors follow
# the theory columns exactly: the forward error falls tenfold per row, the
# central one a hundredfold (float32 leaves the theory much sooner). Then
# rounding takes over and the errors *grow* again as $h$ shrinks, like $1/h$.
# In float32 they reach $1$ (100 % wrong) at $h = 10^{-8}$: there $x + h$
# rounds back to $x$, the two evaluations are identical, and the computed
# derivative is $0$. The best steps land where section 2 predicts, within the
# spacing of the grid.
#
# The float32 column is the argument for float64. The best central difference
# in float32 is about $10^{-5}$ relative, and only at one well-chosen step; a
# checker would need a loose tolerance, and loose tolerances let real bugs
# through (a backward off by 0.1 % is a bug). In float64 the central
# difference with any $h$ from $10^{-4}$ down to $10^{-7}$ is within
# $10^{-8}$, so one fixed step works for every op. `gradcheck` uses
# $h = 10^{-6}$: near the optimum for functions like these, and with room for
# ops whose third derivative is large.
#
# ### It is worse inside a network
#
# A gradient check perturbs one entry $x_i$ of a tensor, but the number it
# differences is a *scalar of the whole output* — the rounding term is
# $u |s| / h$ where $s$ adds up many terms, while the derivative being
# measured belongs to one entry. Take $s = \sum_{j=1}^{1000} w_j \tanh x_j$
# and its derivative with respect to $x_0$: $s \approx 34$, while
# $\partial s/\partial x_0 = w_0 (1 - \tanh^2 x_0) \approx 1.2$.

# %%
x_big, w_big = rng.standard_normal(1000), rng.standard_normal(1000)
exact_d0 = w_big[0] * (1 - np.tanh(x_big[0]) ** 2)


def d_by_central(dtype, h):
    x, w = x_big.astype(dtype), w_big.astype(dtype)
    step = np.zeros_like(x)
    step[0] = h
    s = lambda v: np.sum(w * np.tanh(v))  # noqa: E731
    return float((s(x + step) - s(x - step)) / (2 * dtype(h)))


sum_demo = {(dtype.__name__, h): abs(d_by_central(dtype, h) - exact_d0) / abs(exact_d0)
            for dtype in (np.float32, np.float64) for h in (1e-4, 1e-6)}
print(f"s = {np.sum(w_big * np.tanh(x_big)):.2f},  ds/dx_0 = {exact_d0:.4f}")
for (name, h), err in sum_demo.items():
    print(f"{name}, h = {h:.0e}: relative error {err:.1e}")
print(f"spacing of float32 numbers near s: {np.spacing(np.float32(34.0)):.1e}")

# %% [markdown]
# With $h = 10^{-6}$, moving $x_0$ changes $s$ by about $1.2 \times 10^{-6}$,
# less than half the spacing of float32 numbers near $34$
# ($3.8 \times 10^{-6}$): $s(x + h e_0)$ and $s(x - h e_0)$ round to the same
# float, and the "derivative" comes out as $0$ (or one spacing off). The
# spacing of float64 numbers is $2^{29}$ times finer, and the same step gives
# the derivative to about nine digits.
#
# ## 4. Comparing two gradients: relative error
#
# Gradients come in every size, from $10^{-8}$ to $10^{3}$, so an absolute
# difference says little. We compare an analytic gradient $a$ (from backward)
# with a numerical one $n$ by
#
# $$
# \operatorname{rel}(a, n) = \frac{\max_i |a_i - n_i|}{\max\big(\max_i |a_i|,\ \max_i |n_i|\big)},
# \qquad \operatorname{rel}(0, 0) = 0 .
# $$
#
# It is symmetric in $a$ and $n$ (neither is "the truth": both carry errors),
# it does not change when both are scaled by the same factor, and it lies in
# $[0, 2]$. We divide by the largest entry rather than entry by entry because a
# single entry that happens to be near zero would make $|a_i - n_i| / |n_i|$
# explode from harmless rounding noise. As a rule of thumb in float64 with
# $h = 10^{-6}$: below $10^{-7}$ the backward is right; between $10^{-7}$ and
# $10^{-4}$ look closer (a kink of ReLU or max near an input? an op that is
# badly conditioned?); above $10^{-3}$ it is wrong.


# %%
def relative_error(a, n):
    """max |a - n| / max(max |a|, max |n|), and 0.0 when both are all zeros."""
    # BEGIN SOLUTION lesson 03: relative_error: the relative error defined above, in float64 (0.0 when both are all zeros)
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(n).max(initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - n).max() / scale)
    # END SOLUTION


print("rel([1, 2], [1, 2.002]) =", relative_error([1.0, 2.0], [1.0, 2.002]))
print("rel(1e-9 * [1, 2], 1e-9 * [1, 2.002]) =", relative_error([1e-9, 2e-9], [1e-9, 2.002e-9]))
print("rel(0, 0) =", relative_error(np.zeros(3), np.zeros(3)))

# %% [markdown]
# `minitensor`'s checker applies a per-entry version of the same idea, the
# test of `np.allclose`: entry $i$ passes if
# $|a_i - n_i| \le \text{atol} + \text{rtol}\,|n_i|$. The absolute part
# `atol` absorbs the rounding noise of entries that are nearly zero. All
# tolerances live in one table:

# %%
print(mt.testing.TOLERANCES)

# %% [markdown]
# ## 5. How `gradcheck` checks a whole backward pass
#
# An op maps $x \in \mathbb R^n$ to $y = f(x) \in \mathbb R^m$. Lesson 02 showed
# that backward does not compute the Jacobian $J$ but a vector-Jacobian
# product $J^\top \bar y$ for whatever $\bar y$ it is given. So `gradcheck`
# draws a random vector $w \in \mathbb R^m$ (standard normal entries) and
# checks the scalar
#
# $$
# s(x) = \sum_{j} w_j\, f_j(x) = w^\top f(x),
# \qquad
# \nabla s(x) = J^\top w .
# $$
#
# The right-hand side is exactly what backward computes when it is started from
# $\bar y = w$. The left-hand side is a function $\mathbb R^n \to \mathbb R$, so
# each entry of its gradient is one central difference:
#
# $$
# \frac{\partial s}{\partial x_i} \approx \frac{s(x + h e_i) - s(x - h e_i)}{2h},
# \qquad e_i = \text{the } i\text{-th unit vector} .
# $$
#
# Why random $w$, and not simply the sum of the outputs ($w = \mathbf 1$)? With
# $w = \mathbf 1$ we would only test $J^\top \mathbf 1$, the column sums of $J$. A
# backward that sends the right numbers to the wrong output positions keeps
# the column sums, and passes. For a wrong backward, i.e. a wrong map
# $\tilde J^\top \ne J^\top$, the error $(\tilde J - J)^\top w$ is a nonzero
# linear function of a Gaussian vector, which is zero with probability $0$.
# (We will see such a bug in section 6.)
#
# The module's docstring and the function itself:

# %%
print(inspect.getdoc(mt.testing))
print()
print("gradcheck:", inspect.getdoc(mt.testing.gradcheck))

# %% [markdown]
# The numerical side is `numerical_gradient`: for each entry, nudge it up,
# evaluate $s$, nudge it down, evaluate again, **put the original value back**
# (the other entries, and the caller, must see the input unchanged), and store
# the central difference. It writes into the input's `.data` directly, without
# building a graph.

# %%
print(inspect.getsource(mt.testing.numerical_gradient))

# %% [markdown]
# Every op in `minitensor` passes this check in the tests. Here it is on a
# small layer, $\tanh(xW + b)$, with all three inputs checked at once. Inputs
# must be float64; `gradcheck` refuses float32 for the reasons of section 3.

# %%
x = mt.randn(4, 3, rng=rng, dtype=mt.float64, requires_grad=True)
W = mt.randn(3, 5, rng=rng, dtype=mt.float64, requires_grad=True)
b = mt.randn(5, rng=rng, dtype=mt.float64, requires_grad=True)
layer_ok = mt.testing.gradcheck(lambda x, W, b: (x @ W + b).tanh(), x, W, b)
print("gradcheck of tanh(x W + b):", layer_ok)
try:
    mt.testing.gradcheck(lambda x: x.tanh(), mt.randn(3, rng=rng, requires_grad=True))
except TypeError as err:
    print("float32:", err)

# %% [markdown]
# ## 6. Catching wrong backwards
#
# **A wrong formula.** The derivative of $\tanh$ is $1 - \tanh^2 x$; forget the
# square and you get $1 - \tanh x$, which is even right at $x = 0$. Below are
# the correct op and the buggy one, the relative errors of their analytic
# gradients against numerical ones, and what `gradcheck` says.


# %%
class GoodTanh(mt.Function):
    r"""$y = \tanh x$: $\bar x = (1 - y^2)\,\bar y$."""

    @staticmethod
    def forward(ctx, x):
        y = get_array_module(x).tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


class BadTanh(GoodTanh):
    r"""The same forward with a wrong backward: $\bar x = (1 - y)\,\bar y$ (the square is missing)."""

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y)


def analytic_vs_numeric(fn, x, weights):
    """(backward's gradient of sum(weights * fn(x)), central differences of the same), for one input."""
    x.grad = None
    fn(x).backward(weights)
    numeric = mt.testing.numerical_gradient(fn, [x], 0, weights, mt.testing.TOLERANCES["float64"]["eps"])
    return x.grad.copy(), numeric


x = mt.randn(3, 4, rng=rng, dtype=mt.float64, requires_grad=True)
weights = rng.standard_normal((3, 4))
tanh_errors = {}
for op in (GoodTanh, BadTanh):
    tanh_errors[op.__name__] = relative_error(*analytic_vs_numeric(op.apply, x, weights))
    print(f"{op.__name__}: relative error {tanh_errors[op.__name__]:.1e}")

try:
    mt.testing.gradcheck(BadTanh.apply, x)
    bad_tanh_caught = False
except mt.testing.GradcheckError as err:
    bad_tanh_caught = True
    print("gradcheck on BadTanh:", err)

# %% [markdown]
# **Right numbers, wrong places.** `Flip` reverses the last axis,
# $y_{\dots, j} = x_{\dots, m-1-j}$, so its backward must reverse the
# gradient back: $\bar x_{\dots, j} = \bar y_{\dots, m-1-j}$. The buggy
# version below returns $\bar y$ as it is. With $w = \mathbf 1$ the bug is
# invisible — every entry of $\bar y$ is $1$, reversed or not. The random
# weights of `gradcheck` expose it.


# %%
class ForgetfulFlip(mt.Function):
    r"""$y = x$ reversed along the last axis; the backward FORGETS to reverse $\bar y$ (a bug)."""

    @staticmethod
    def forward(ctx, x):
        return x[..., ::-1].copy()

    @staticmethod
    def backward(ctx, grad):
        return grad  # should be grad[..., ::-1]


x = mt.randn(3, 4, rng=rng, dtype=mt.float64, requires_grad=True)
flip_error_ones = relative_error(*analytic_vs_numeric(ForgetfulFlip.apply, x, np.ones((3, 4))))
flip_error_random = relative_error(*analytic_vs_numeric(ForgetfulFlip.apply, x, rng.standard_normal((3, 4))))
print(f"ForgetfulFlip, weights all ones: relative error {flip_error_ones:.1e}  (looks fine!)")
print(f"ForgetfulFlip, random weights:   relative error {flip_error_random:.1e}")
try:
    mt.testing.gradcheck(ForgetfulFlip.apply, x)
    flip_caught = False
except mt.testing.GradcheckError as err:
    flip_caught = True
    print("gradcheck on ForgetfulFlip:", err)

# %% [markdown]
# **Right numbers, wrong memory.** The engine keeps a fresh gradient array as
# a leaf's `.grad` and later adds into it in place, so a backward must return
# new arrays or views of its `grad`, never an array it saved. `ThriftyTanh`
# below saves memory by writing the correct gradient into its saved output
# `y` and returning it: the numbers are right, but `x.grad` would now *be* `y`
# and the next `x.grad += ...` would rewrite the forward output. Finite
# differences cannot see this, so `gradcheck` always runs the backward with the
# engine's contract check on (`with mt.debug_mode():` or `MINITENSOR_DEBUG=1`
# turns it on anywhere), and it names the op.


# %%
class ThriftyTanh(GoodTanh):
    r"""$\bar x = (1 - y^2)\,\bar y$, right, but written into the saved $y$ and returned (a bug)."""

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        y[...] = grad * (1 - y * y)
        return y  # should be a new array: return grad * (1 - y * y)


try:
    mt.testing.gradcheck(ThriftyTanh.apply, x)
    contract_caught = False
except mt.AutogradContractError as err:
    contract_caught = True
    print("gradcheck on ThriftyTanh:", err)

# %% [markdown]
# ## 7. Big tensors: the directional check
#
# `gradcheck` costs two evaluations of the whole function per input entry. For
# a $512 \times 512$ weight matrix that is half a million forward passes. For
# big inputs we test the gradient along a few random directions instead. Fix a
# direction $d$ (one random tensor per input) and look at the one-variable
# function $g(t) = s(x + t d)$. By the chain rule
#
# $$
# g'(0) = \sum_i \frac{\partial s}{\partial x_i}\, d_i = \langle \nabla s(x), d \rangle,
# \qquad
# g'(0) \approx \frac{s(x + h d) - s(x - h d)}{2h} .
# $$
#
# The left side needs one backward pass, for all directions together; the
# right side two forward passes per direction. If the analytic gradient is
# off by an error vector $\delta \ne 0$, the predicted value is off by
# $\langle \delta, d \rangle$, a Gaussian with standard deviation
# $\|\delta\|$: zero only with probability $0$, and a few directions make an
# unlucky near-zero very unlikely. What we give up is the location: the check
# says *that* the gradient is wrong, not *which* entry. So: small shapes and
# `gradcheck` in unit tests of an op, `directional_check` on the big
# composed models.

# %%
print(inspect.getdoc(mt.testing.directional_check))
X_big = mt.randn(64, 128, rng=rng, dtype=mt.float64, requires_grad=True)
W_big = mt.randn(128, 64, rng=rng, dtype=mt.float64, requires_grad=True)
n_entries = X_big.size + W_big.size
print(f"\n{n_entries} input entries: gradcheck would evaluate the function {2 * n_entries} times, "
      f"3 directions take 6 (plus a forward and a backward pass for the analytic side)")
directional_ok = mt.testing.directional_check(lambda X, W: GoodTanh.apply(X @ W), X_big, W_big)
print("directional check, GoodTanh:", directional_ok)
try:
    mt.testing.directional_check(lambda X, W: BadTanh.apply(X @ W), X_big, W_big)
    directional_caught = False
except mt.testing.GradcheckError as err:
    directional_caught = True
    print("directional check, BadTanh:", err)

# %% [markdown]
# ## Exercises
#
# In the student copy two regions raise `NotImplementedError`. Use the
# derivations directly above them:
#
# 1. **`numerical_gradient`** in `minitensor/testing.py` (section 5): for the
#    entry at `pos`, evaluate the weighted scalar $s$ with the entry at
#    `orig + eps` and at `orig - eps` (the helper `_scalar(fn, inputs, weights)`
#    computes $s$), restore `orig`, and store the central difference in
#    `grad[pos]`. Every `gradcheck` in this lesson and in the test suite
#    depends on it.
# 2. **`relative_error(a, n)`** (section 4): the largest absolute difference
#    divided by the largest absolute entry of either argument; `0.0` when both
#    are all zeros. Accept lists as well as arrays, and return a Python float.
#
# When both are done the lesson runs to the end: `GoodTanh` passes, `BadTanh`
# and `ForgetfulFlip` are caught, and so is `BadTanh` by the directional check.
#
# If you want more: change `central_difference` in section 3 to the
# five-point stencil
# $\big(-f(x + 2h) + 8 f(x + h) - 8 f(x - h) + f(x - 2h)\big) / 12h$, whose
# truncation error is $O(h^4)$. Derive its best step the way section 2 does,
# then check your prediction in the table. Does it beat the central difference
# in float64? By how much?
#
# Check your work with `pytest -m lesson03 -x` (from the repository's root; `-x` stops at the first failure).
