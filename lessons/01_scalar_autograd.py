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
# # Lesson 01 — scalar autograd from scratch
#
# **Needs:** no earlier exercise: a fresh student copy can start here.
#
# Every deep learning framework rests on one idea: *reverse-mode automatic
# differentiation*. You write an ordinary computation, the framework remembers
# how each number was made, and one call to `backward()` gives you the
# derivative of the final number with respect to every number that went into it.
#
# In this lesson we build that machinery for single numbers (scalars), in about
# a hundred lines of plain Python. Later lessons do the same thing for NumPy
# arrays inside `minitensor`; the ideas do not change, only the bookkeeping
# for shapes.
#
# What you need: the chain rule from calculus. What you will get:
#
# 1. a `Value` class that records a computation graph as you compute;
# 2. the local derivative of each operation, and why gradients *accumulate*;
# 3. an **iterative** topological sort, and why a recursive one is not enough;
# 4. `backward()`, checked against finite differences;
# 5. a tiny neural network trained with gradient descent on our own gradients.
#
# Code between `# BEGIN SOLUTION` and `# END SOLUTION` is blanked out in the
# student copy: those are the exercises listed at the end.

# %%
import math
import random

# %% [markdown]
# ## 1. The chain rule on a graph
#
# Think of a computation as a graph. Each node is a number; an arrow goes from
# each *parent* (an input of an operation) to its *child* (the result). For
# example $L = (a \cdot b) + a$ has nodes $a, b, c = a \cdot b$ and $L = c + a$;
# $a$ has two children, $c$ and $L$.
#
# We want $\partial L / \partial x$ for every node $x$. Write it as
# $\bar x$ (read "x-bar", the *adjoint* of $x$). The final output depends on
# $x$ only through the children of $x$, so the multivariable chain rule says
#
# $$
# \frac{\partial L}{\partial x}
#   = \sum_{y \in \text{children}(x)} \frac{\partial L}{\partial y}\,\frac{\partial y}{\partial x}
# \qquad\text{that is}\qquad
# \bar x = \sum_{y \in \text{children}(x)} \bar y \, \frac{\partial y}{\partial x}.
# $$
#
# Two kinds of factor appear:
#
# * $\bar y$ — a *global* quantity: how the loss reacts to $y$. It is known
#   once everything downstream of $y$ has been handled.
# * $\partial y / \partial x$ — a *local* derivative: it only involves the one
#   operation that made $y$, and its inputs. Each operation knows its own.
#
# So every operation needs exactly one piece of code: given $\bar y$ of its
# output, add $\bar y \cdot \partial y / \partial x$ into the adjoint of each
# input $x$.
#
# ### Why gradients accumulate (`+=`, never `=`)
#
# The sum over children is the whole reason. A node used twice receives one
# contribution per use, and the contributions must be **added**. Two small
# cases make this concrete. For $L = a \cdot a$ the multiplication sees $a$ in
# both of its input slots; each slot contributes "the other input times
# $\bar L$":
#
# $$
# \frac{\partial (a \cdot a)}{\partial a} = \underbrace{a}_{\text{slot 1}} + \underbrace{a}_{\text{slot 2}} = 2a .
# $$
#
# For $L = a + a$ each slot contributes $1$:
#
# $$
# \frac{\partial (a + a)}{\partial a} = 1 + 1 = 2 .
# $$
#
# If the code *assigned* (`a.grad = ...`) instead of adding, the second slot
# would overwrite the first and we would get $a$ and $1$: silently wrong.
# We check both cases once `backward()` exists (section 4).

# %% [markdown]
# ## 2. The `Value` class, with addition and multiplication
#
# A `Value` holds
#
# * `data` — the number itself, computed in the forward pass;
# * `grad` — its adjoint $\bar x = \partial L / \partial x$, filled in by the backward pass, starting at $0$;
# * `_parents` — the Values it was computed from (empty for inputs, called *leaves*);
# * `_backward` — a closure that adds this node's contribution into its parents' `grad`.
#
# The two primitive binary operations and their local derivatives:
#
# $$
# y = x_1 + x_2:\quad \frac{\partial y}{\partial x_1} = 1,\quad \frac{\partial y}{\partial x_2} = 1
# \qquad\Longrightarrow\qquad \bar x_1 \mathrel{+}= \bar y,\quad \bar x_2 \mathrel{+}= \bar y
# $$
#
# $$
# y = x_1 \cdot x_2:\quad \frac{\partial y}{\partial x_1} = x_2,\quad \frac{\partial y}{\partial x_2} = x_1
# \qquad\Longrightarrow\qquad \bar x_1 \mathrel{+}= x_2\,\bar y,\quad \bar x_2 \mathrel{+}= x_1\,\bar y
# $$
#
# Plain numbers mixed in (`x + 1`, `2 * x`) are wrapped into leaf Values.
# `__radd__` and `__rmul__` make `1 + x` and `2 * x` work too: Python calls
# them when the left operand is a plain number that does not know about `Value`.


# %%
class Value:
    """A scalar that remembers how it was computed, so it can be differentiated."""

    def __init__(self, data, _parents=(), _op=""):
        self.data = float(data)
        self.grad = 0.0  # dL/d(self); nothing has flowed back yet
        self._parents = tuple(_parents)
        self._op = _op  # a label for printing only
        self._backward = lambda: None  # leaves have nobody to pass gradient to

    def __repr__(self):
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    @staticmethod
    def _wrap(x):
        return x if isinstance(x, Value) else Value(x)

    def __add__(self, other):
        other = Value._wrap(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():
            # local derivative 1 for both inputs
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other):
        other = Value._wrap(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            # each input's local derivative is the *other* input
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __radd__(self, other):  # other + self, where other is a plain number
        return self + other

    def __rmul__(self, other):  # other * self
        return self * other


# %% [markdown]
# ## 3. More operations
#
# ### Powers with a constant exponent, and everything built from them
#
# For a constant $n$ (not a Value: we never differentiate with respect to it)
# the power rule gives the local derivative:
#
# $$
# y = x^n:\qquad \frac{\partial y}{\partial x} = n\,x^{\,n-1}
# \qquad\Longrightarrow\qquad \bar x \mathrel{+}= n\,x^{\,n-1}\,\bar y .
# $$
#
# Negation, subtraction and division need no backward code of their own: we
# build them from the primitives, and the chain rule does the rest.
#
# $$
# -x = x \cdot (-1), \qquad
# x_1 - x_2 = x_1 + (-x_2), \qquad
# \frac{x_1}{x_2} = x_1 \cdot x_2^{-1}
# \;\Rightarrow\;
# \frac{\partial}{\partial x_2}\frac{x_1}{x_2} = x_1 \cdot (-1)\,x_2^{-2} = -\frac{x_1}{x_2^2}.
# $$
#
# A small primitive set means fewer backward rules to get wrong.


# %%
def _pow(self, n):
    if not isinstance(n, (int, float)):
        raise TypeError(f"Value ** n: only a constant int/float exponent is supported, got {type(n).__name__}")
    out = Value(self.data**n, (self,), f"**{n}")

    def _backward():
        # BEGIN SOLUTION lesson 01: the local derivative of x**n derived above, times the output's gradient, ADDED to self.grad
        self.grad += n * self.data ** (n - 1) * out.grad
        # END SOLUTION

    out._backward = _backward
    return out


Value.__pow__ = _pow
Value.__neg__ = lambda self: self * -1
Value.__sub__ = lambda self, other: self + (-Value._wrap(other))
Value.__rsub__ = lambda self, other: Value._wrap(other) + (-self)  # other - self
Value.__truediv__ = lambda self, other: self * Value._wrap(other) ** -1
Value.__rtruediv__ = lambda self, other: Value._wrap(other) * self**-1  # other / self

# %% [markdown]
# ### Non-linear functions: tanh, exp, relu
#
# Hyperbolic tangent. With $t = \tanh x = \dfrac{e^x - e^{-x}}{e^x + e^{-x}}$
# the quotient rule gives
#
# $$
# \frac{d}{dx}\tanh x
#   = \frac{(e^x + e^{-x})^2 - (e^x - e^{-x})^2}{(e^x + e^{-x})^2}
#   = 1 - \tanh^2 x = 1 - t^2
# \qquad\Longrightarrow\qquad \bar x \mathrel{+}= (1 - t^2)\,\bar y .
# $$
#
# The derivative is written with the *output* $t$, which we already have: the
# backward pass reuses the forward result instead of recomputing exponentials.
# (For the forward pass we call `math.tanh`, which is accurate for large $|x|$,
# where the textbook formula would overflow.)
#
# Exponential — its own derivative, so again the output is all we need:
#
# $$
# y = e^x:\qquad \frac{\partial y}{\partial x} = e^x = y
# \qquad\Longrightarrow\qquad \bar x \mathrel{+}= y\,\bar y .
# $$
#
# Rectified linear unit. It has a kink at $0$, where it is not differentiable;
# like every framework we pick $0$ there:
#
# $$
# y = \max(0, x):\qquad \frac{\partial y}{\partial x} = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}
# \qquad\Longrightarrow\qquad \bar x \mathrel{+}= [x > 0]\,\bar y .
# $$


# %%
def _tanh(self):
    t = math.tanh(self.data)
    out = Value(t, (self,), "tanh")

    def _backward():
        # BEGIN SOLUTION lesson 01: the local derivative of tanh derived above (t is already computed), times the output's gradient, added to self.grad
        self.grad += (1.0 - t * t) * out.grad
        # END SOLUTION

    out._backward = _backward
    return out


def _exp(self):
    out = Value(math.exp(self.data), (self,), "exp")

    def _backward():
        self.grad += out.data * out.grad

    out._backward = _backward
    return out


def _relu(self):
    out = Value(self.data if self.data > 0 else 0.0, (self,), "relu")

    def _backward():
        self.grad += (1.0 if self.data > 0 else 0.0) * out.grad

    out._backward = _backward
    return out


Value.tanh = _tanh
Value.exp = _exp
Value.relu = _relu

# %% [markdown]
# ## 4. In which order? Topological sort
#
# Look again at $\bar x = \sum_{y} \bar y \, \partial y / \partial x$. A node
# may hand its adjoint to its parents only when that adjoint is **complete**,
# that is, after *every* child has added its contribution. So the nodes must
# be processed children-first: the reverse of an order in which every node
# comes after its parents. Such an order is a *topological order* of the graph
# (it exists because a computation graph has no cycles: a value cannot be
# computed from itself).
#
# Formally we want a list $v_1, \dots, v_N$ of all nodes that $L$ depends on,
# with
#
# $$
# u \in \text{parents}(v_j) \;\Longrightarrow\; u = v_i \text{ for some } i < j,
# \qquad v_N = L .
# $$
#
# The textbook way is a recursive depth-first search: "first list my parents,
# then me". It is short, but every step of recursion is a Python stack frame,
# and Python stops at `sys.getrecursionlimit()` frames (1000 by default)
# with a `RecursionError`. A graph 10,000 operations deep — an RNN unrolled
# over a long sequence, or simply a long loop of scalar updates — is perfectly
# ordinary, and raising the limit only trades the error for a possible crash of
# the interpreter when the C stack runs out.
#
# So we do the same depth-first search **with an explicit stack** (a Python
# list, which can grow to millions of entries). Each stack entry is a node and
# a flag:
#
# * `(node, False)`: "visit `node`": if it is new, mark it visited, push
#   `(node, True)`, then push its unvisited parents on top, so they are all
#   finished before `node` comes back up;
# * `(node, True)`: "all parents of `node` are in the list": append `node`.
#
# A node is appended only after all of its parents were, which is exactly the
# property above; the visited set makes every node appear once, even when it is
# reachable along many paths.


# %%
def topological_order(root):
    """All Values that `root` depends on (and `root`), every node after its parents.

    Iterative depth-first search: no recursion, so graph depth is not limited
    by Python's recursion limit.
    """
    # BEGIN SOLUTION lesson 01: the topological order described above: every node after all of its parents, found without recursion
    order = []
    visited = set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)  # every parent was appended before this point
            continue
        if node in visited:
            continue  # already reached along another path
        visited.add(node)
        stack.append((node, True))  # comes back after all parents are done
        for parent in node._parents:
            if parent not in visited:
                stack.append((parent, False))
    return order
    # END SOLUTION


# %% [markdown]
# ## 5. `backward()`
#
# The output's adjoint is the start of everything:
#
# $$
# \bar L = \frac{\partial L}{\partial L} = 1 .
# $$
#
# Then walk the topological order **backwards** (children first) and let each
# node run its `_backward`, which adds $\bar y \cdot \partial y / \partial x$
# into each parent $x$. When a node's turn comes, all its children have already
# run, so its own `grad` is final.
#
# `backward()` does not reset anything: gradients keep accumulating across
# calls, as in PyTorch. Before reusing the same leaves (in a training loop),
# set their `grad` back to $0$ yourself.


# %%
def backward(self):
    """Fill in `.grad` = d(self)/d(node) for every node that `self` depends on."""
    order = topological_order(self)
    self.grad = 1.0  # dL/dL
    for node in reversed(order):
        node._backward()


Value.backward = backward

# %% [markdown]
# A first test by hand. For $L = (a \cdot b) + a$ with $a = 2, b = -3$:
# $\partial L / \partial a = b + 1 = -2$ (one contribution through the
# product, one directly) and $\partial L / \partial b = a = 2$.
# Then the two accumulation cases from section 1: $a \cdot a$ and $a + a$.

# %%
a, b = Value(2.0), Value(-3.0)
L = a * b + a
L.backward()
print(f"L = a*b + a:  dL/da = {a.grad:+.1f} (expect {b.data + 1:+.1f}),  dL/db = {b.grad:+.1f} (expect {a.data:+.1f})")

a = Value(3.0)
(a * a).backward()
print(f"L = a*a at a=3:  dL/da = {a.grad:.1f} (expect 2a = 6.0)")

a = Value(3.0)
(a + a).backward()
print(f"L = a+a:         dL/da = {a.grad:.1f} (expect 2.0)")

# %% [markdown]
# ## 6. A 10,000-deep chain
#
# Build $y_0 = x$, $y_{k+1} = y_k + x$. After $N$ steps $y_N = (N + 1)\,x$, so
#
# $$
# \frac{\partial y_N}{\partial x} = N + 1 .
# $$
#
# The graph is $N$ operations deep, and $x$ is used $N + 1$ times (so this
# also exercises accumulation). The recursive sort below is the textbook
# version, kept only to watch it fail; ours handles the chain without trouble.

# %%
DEPTH = 10_000


def topological_order_recursive(root):
    """The textbook recursive version. Do not use: fails on deep graphs."""
    order, visited = [], set()

    def visit(node):
        if node not in visited:
            visited.add(node)
            for parent in node._parents:
                visit(parent)
            order.append(node)

    visit(root)
    return order


x = Value(0.5)
y = x
for _ in range(DEPTH):
    y = y + x

try:
    topological_order_recursive(y)
    print("recursive sort: finished (is the recursion limit very high?)")
except RecursionError:
    print(f"recursive sort: RecursionError on a {DEPTH}-deep chain")

y.backward()
print(f"iterative sort + backward: dy/dx = {x.grad:.1f} (expect {DEPTH + 1})")

# %% [markdown]
# ## 7. Checking gradients against finite differences
#
# Autograd code is easy to get subtly wrong, so we compare it with the
# definition of the derivative. Taylor-expanding $f$ around $x$,
#
# $$
# f(x \pm h) = f(x) \pm h f'(x) + \frac{h^2}{2} f''(x) \pm \frac{h^3}{6} f'''(x) + O(h^4),
# $$
#
# and subtracting the two, the even terms cancel:
#
# $$
# \frac{f(x + h) - f(x - h)}{2h} = f'(x) + \frac{h^2}{6} f'''(x) + O(h^4).
# $$
#
# This *central* difference has error $O(h^2)$, against $O(h)$ for the one-sided
# $(f(x+h) - f(x))/h$. We cannot make $h$ tiny, though: the two values of $f$
# are rounded to about 16 significant digits (float64), and dividing their
# difference by $2h$ magnifies that rounding by $1/h$. $h = 10^{-6}$ balances the
# two errors well for functions of moderate size; expect agreement to roughly
# $10^{-9}$ or better.
#
# Our test subject is a single neuron with two inputs:
# $f(w_1, w_2, b) = \tanh(w_1 x_1 + w_2 x_2 + b)$, differentiated with
# respect to its weights and bias.


# %%
def neuron(w1, w2, b, x1=2.0, x2=-1.0):
    return (w1 * x1 + w2 * x2 + b).tanh()


weights = {"w1": -0.3, "w2": 0.8, "b": 0.1}
leaves = {name: Value(v) for name, v in weights.items()}
neuron(**leaves).backward()

H = 1e-6  # central-difference step, see the error estimate above
fd_check = {}  # name -> (autograd, finite difference)
for name in weights:
    plus = {k: Value(v + H if k == name else v) for k, v in weights.items()}
    minus = {k: Value(v - H if k == name else v) for k, v in weights.items()}
    numeric = (neuron(**plus).data - neuron(**minus).data) / (2 * H)
    fd_check[name] = (leaves[name].grad, numeric)
    print(f"d tanh / d {name:2s}: autograd {leaves[name].grad:+.10f}   finite difference {numeric:+.10f}")

# %% [markdown]
# ## 8. Training a tiny network
#
# Now the payoff. A two-layer perceptron with two inputs, four hidden tanh
# units and one tanh output:
#
# $$
# h_j = \tanh\Big(\sum_{i=1}^{2} W^{(1)}_{ji} x_i + b^{(1)}_j\Big),\quad j = 1..4,
# \qquad
# \hat y = \tanh\Big(\sum_{j=1}^{4} W^{(2)}_{j} h_j + b^{(2)}\Big).
# $$
#
# We fit it to XOR with targets $\pm 1$ — four points no single neuron can
# separate — by minimising the mean squared error
#
# $$
# \mathcal L(\theta) = \frac{1}{4}\sum_{k=1}^{4} \big(\hat y(x_k; \theta) - y_k\big)^2
# $$
#
# with plain gradient descent: every parameter $\theta$ moves a small step
# $\eta$ (the learning rate) against its gradient,
#
# $$
# \theta \leftarrow \theta - \eta\, \frac{\partial \mathcal L}{\partial \theta} .
# $$
#
# Each step builds a fresh graph, so intermediate nodes start with `grad = 0`;
# the parameters are reused, so their `grad` must be reset before each
# `backward()` (it accumulates, remember).

# %%
XOR_X = [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)]
XOR_Y = [-1.0, 1.0, 1.0, -1.0]


class Neuron:
    def __init__(self, n_in, rng):
        # weights uniform in [-1, 1]: big enough to break symmetry, small enough not to saturate tanh
        self.w = [Value(rng.uniform(-1.0, 1.0)) for _ in range(n_in)]
        self.b = Value(0.0)

    def __call__(self, x):
        return sum((wi * xi for wi, xi in zip(self.w, x)), self.b).tanh()

    def parameters(self):
        return self.w + [self.b]


class MLP:
    def __init__(self, n_in, n_hidden, rng):
        self.hidden = [Neuron(n_in, rng) for _ in range(n_hidden)]
        self.output = Neuron(n_hidden, rng)

    def __call__(self, x):
        return self.output([n(x) for n in self.hidden])

    def parameters(self):
        return [p for n in self.hidden + [self.output] for p in n.parameters()]


def train(steps=50, lr=0.5, seed=0):
    """Fit an MLP(2, 4, 1) to XOR by gradient descent. Returns (model, loss per step)."""
    model = MLP(2, 4, random.Random(seed))
    params = model.parameters()
    losses = []
    for _ in range(steps):
        loss = sum((model(x) - y) ** 2 for x, y in zip(XOR_X, XOR_Y)) / len(XOR_X)
        for p in params:
            p.grad = 0.0  # gradients accumulate: clear last step's
        loss.backward()
        for p in params:
            p.data -= lr * p.grad
        losses.append(loss.data)
    return model, losses


model, losses = train()
for step in range(0, len(losses), 10):
    print(f"step {step:2d}  loss {losses[step]:.4f}")
print(f"step {len(losses) - 1:2d}  loss {losses[-1]:.4f}")
print("predictions:", ", ".join(f"{model(x).data:+.2f}" for x in XOR_X), " targets:", XOR_Y)

# %% [markdown]
# ## Exercises
#
# In the student copy, three regions of the code above raise
# `NotImplementedError` instead of doing their job. Fill them in, using the
# derivation directly above each one:
#
# 1. **The power rule** in `_pow`'s `_backward` (section 3): add
#    $n\,x^{n-1}\,\bar y$ into `self.grad`. Division and the training loss
#    both rely on it.
# 2. **The tanh rule** in `_tanh`'s `_backward` (section 3): add
#    $(1 - t^2)\,\bar y$, using the output `t` you already have.
# 3. **The iterative topological sort** `topological_order` (section 4): an
#    explicit stack, no recursion; return every node once, each after all its
#    parents, with `root` last.
#
# Remember: `+=`, never `=`. When you are done the lesson runs top to bottom,
# the 10,000-deep chain gives $10001$, the finite differences agree with
# autograd, and the XOR loss goes down.
#
# If you want more: run `train(seed=5)`. The loss stalls near $1$: three
# points are fitted, but the output for $(1, 1)$ sits at $+1$ instead of $-1$.
# The tanh units involved are saturated, $t \approx \pm 1$, so their local
# derivative $1 - t^2$ is almost $0$ and almost no gradient gets through.
# Gradient descent only follows the local slope, so where it ends up depends on
# where it starts. Which other seeds get stuck?
#
# Then add `log` (with $\partial \log x / \partial x = 1/x$) and
# `sigmoid` (built from `exp`, `+` and `/`, no new backward rule), and check
# them against finite differences the way section 7 does.
#
# Check your work with `pytest -m lesson01 -x` (from the repository's root; `-x` stops at the first failure).
