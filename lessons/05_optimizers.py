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
# # Lesson 05 — optimizers: SGD, momentum, Adam, warmup and annealing
#
# **Needs:** the exercises of lesson 04 solved first (its tests and code call them).
#
# Backpropagation gives us $g = \nabla_\theta L$. What to *do* with it is the
# optimizer's job, and the answer matters as much as the model: GPT-1 was
# trained with Adam, a learning rate warmed up linearly to $2.5 \cdot 10^{-4}$
# over the first 2000 updates and then annealed to $0$ along a cosine, with a
# decoupled weight decay of $0.01$ on the weight matrices. By the end of this
# lesson every part of that sentence will have a derivation and a few lines of
# code behind it.
#
# 1. gradient descent as a first-order Taylor step, and its step-size limit;
# 2. momentum as an exponential moving average of gradients;
# 3. Adam: two moving averages, and the bias correction derived;
# 4. decoupled weight decay (AdamW) against L2 regularisation;
# 5. why Adam wants a learning-rate warmup; warmup + cosine / linear annealing;
# 6. gradient clipping by the global norm;
# 7. the same network trained by SGD, SGD with momentum and Adam.
#
# The optimizers live in `minitensor/optim.py`. Each one keeps a list of
# parameters and, in `step()`, updates `p.data` in place from `p.grad`; the
# per-parameter arrays it remembers between steps are in `opt.state`.

# %%
import inspect
import math
import textwrap

import numpy as np

import minitensor as mt
import minitensor.functional as F

np.set_printoptions(precision=4, suppress=True)


def show(obj, source=False):
    """Print a library object's docstring (or its source code) under a title."""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    print(f"--- {name} ({'source' if source else 'docstring'}) ---")
    print(textwrap.dedent(inspect.getsource(obj)) if source else inspect.getdoc(obj))


show(mt.optim)

# %% [markdown]
# ## 1. Gradient descent is a first-order Taylor step
#
# Near the current parameters $\theta$, the loss is approximately linear in a
# small step $\Delta$:
#
# $$
# L(\theta + \Delta) = L(\theta) + g^\top \Delta + O(\lVert \Delta \rVert^2), \qquad g = \nabla L(\theta) .
# $$
#
# Among all steps of a given length $\lVert \Delta \rVert = \rho$, Cauchy–Schwarz
# ($g^\top \Delta \ge -\lVert g \rVert\, \rho$, with equality only for $\Delta \propto -g$)
# says the steepest decrease is along $-g$. How far to go? The linear model is
# only trusted nearby, so penalise distance and minimise
#
# $$
# g^\top \Delta + \frac{1}{2\eta} \lVert \Delta \rVert^2
# \quad\Longrightarrow\quad g + \frac{1}{\eta} \Delta = 0
# \quad\Longrightarrow\quad \Delta = -\eta\, g .
# $$
#
# That is gradient descent, $\theta \leftarrow \theta - \eta g$, with the learning
# rate $\eta$ as the size of the trust region. The neglected second-order term
# decides whether $\eta$ is too big. On a quadratic bowl
# $L = \tfrac12 \sum_i h_i \theta_i^2$ (every smooth loss looks like one near a
# minimum, in the eigenbasis of its Hessian) the gradient is $h_i \theta_i$ and
# each coordinate evolves on its own:
#
# $$
# \theta_i \leftarrow (1 - \eta h_i)\, \theta_i .
# $$
#
# It shrinks only if $|1 - \eta h_i| < 1$, i.e. $\eta < 2 / h_{\max}$: the
# steepest direction caps the learning rate, and the flattest direction then
# crawls at a rate $1 - \eta h_{\min} > 1 - 2 h_{\min}/h_{\max}$. The ratio
# $\kappa = h_{\max}/h_{\min}$ (the condition number) sets how slow plain
# gradient descent is. Below, $h = (1, 25)$: the limit is $\eta < 0.08$.

# %%
CURVATURES = np.array([1.0, 25.0])


def quadratic_run(lr, momentum=0.0, steps=200):
    """Minimise 0.5 * sum(h * theta^2) from theta = (1, 1) with mt.optim.SGD; returns the losses."""
    theta = mt.nn.Parameter(np.ones(2))
    opt = mt.optim.SGD([theta], lr=lr, momentum=momentum)
    losses = []
    for _ in range(steps):
        loss = 0.5 * (mt.tensor(CURVATURES) * theta * theta).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def steps_to(losses, target=1e-6):
    """First step whose loss is below target (None if never)."""
    hits = [i for i, v in enumerate(losses) if v < target]
    return hits[0] if hits else None


for lr in (0.01, 0.04, 0.079, 0.081):
    losses = quadratic_run(lr)
    print(f"SGD lr={lr:<6}  loss after 200 steps {losses[-1]:10.3g}   steps to 1e-6: {steps_to(losses)}")

# %% [markdown]
# ## 2. Momentum: an exponential moving average of gradients
#
# The library's SGD keeps a *velocity* $v$ per parameter:
#
# $$
# v_t = \mu\, v_{t-1} + g_t, \qquad \theta_t = \theta_{t-1} - \eta\, v_t, \qquad v_0 = 0 .
# $$
#
# Unrolling the recursion shows what $v$ is, a geometrically weighted sum of
# all past gradients:
#
# $$
# v_t = \sum_{k=1}^{t} \mu^{\,t-k}\, g_k .
# $$
#
# Up to the factor $1/(1-\mu)$ this is an exponential moving average: the
# weights $(1-\mu)\mu^{t-k}$ sum to $1 - \mu^t \to 1$, and the memory is about
# $1/(1-\mu)$ steps ($10$ for $\mu = 0.9$). Two consequences:
#
# * a gradient that keeps its sign is amplified: for a constant $g$,
#   $v_t \to g \sum_{j \ge 0} \mu^j = g/(1-\mu)$, an effective learning rate of $\eta/(1-\mu)$;
# * a gradient that flips sign every step is damped:
#   $\sum_{j \ge 0} (-\mu)^j = 1/(1+\mu)$.
#
# On the bowl above that is exactly what we want: the steep coordinate
# oscillates (damped), the flat one moves steadily (amplified). Too much
# momentum overshoots, though, and oscillates in its own right.

# %%
show(mt.optim.SGD)
print()
for mom in (0.0, 0.5, 0.8, 0.9):
    losses = quadratic_run(0.04, momentum=mom)
    print(f"SGD lr=0.04 momentum={mom}:  steps to loss < 1e-6: {steps_to(losses)}")

# %% [markdown]
# ## 3. Adam
#
# Adam (Kingma & Ba, 2015) keeps two moving averages per coordinate, of the
# gradient and of its square, both starting at $0$:
#
# $$
# m_t = \beta_1 m_{t-1} + (1-\beta_1)\, g_t, \qquad
# v_t = \beta_2 v_{t-1} + (1-\beta_2)\, g_t^2 ,
# $$
#
# and steps by their ratio, coordinate by coordinate:
#
# $$
# \theta_t = \theta_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}, \qquad
# \hat m_t = \frac{m_t}{1 - \beta_1^t}, \qquad \hat v_t = \frac{v_t}{1 - \beta_2^t} .
# $$
#
# $\hat m$ estimates the mean gradient $E[g]$, $\hat v$ its second moment
# $E[g^2]$. Their ratio has no units: multiply the loss by $1000$ and the update
# does not change (up to $\epsilon$). Each coordinate gets its own step size,
# about $\eta$ where the gradient is consistent and smaller where it is mostly
# noise. Typical values: $\beta_1 = 0.9$, $\beta_2 = 0.999$, $\epsilon = 10^{-8}$.
#
# ### The bias correction, derived
#
# Unroll $m_t$ as we did for momentum:
#
# $$
# m_t = (1 - \beta_1) \sum_{k=1}^{t} \beta_1^{\,t-k}\, g_k .
# $$
#
# Suppose the gradients are drawn from a distribution that does not change
# over these steps, $E[g_k] = E[g]$. By linearity of expectation and the
# geometric sum $\sum_{j=0}^{t-1} \beta_1^j = (1 - \beta_1^t)/(1 - \beta_1)$:
#
# $$
# E[m_t] = (1 - \beta_1)\, E[g] \sum_{j=0}^{t-1} \beta_1^{\,j} = (1 - \beta_1^t)\, E[g] .
# $$
#
# So $m_t$ underestimates $E[g]$ by the factor $1 - \beta_1^t$ (because it
# started at $0$), and dividing by that factor removes the bias. The same
# argument with $g^2$ gives $E[v_t] = (1 - \beta_2^t)\, E[g^2]$. The correction
# matters most for $v$: with $\beta_2 = 0.999$, $1 - \beta_2^t$ is $0.001$ at $t = 1$
# and still only $0.63$ at $t = 1000$. Without it the first step would be
#
# $$
# \frac{m_1}{\sqrt{v_1}} = \frac{(1-\beta_1)\, g_1}{\sqrt{1-\beta_2}\, |g_1|}
#   = \frac{0.1}{0.0316}\, \mathrm{sign}(g_1) \approx 3.16\, \mathrm{sign}(g_1) ,
# $$
#
# more than three times the intended $\eta$, in *every* coordinate, and it gets
# worse before it gets better: $m$ forgets its zero start within about
# $1/(1-\beta_1) = 10$ steps, $v$ only within about $1000$, so the uncorrected
# ratio keeps growing for a while (the last column below). With the correction,
# $\hat m_1 / \sqrt{\hat v_1} = g_1 / |g_1|$: exactly $\eta$ per coordinate.
#
# Below, Adam (the exercise, in `minitensor/optim.py`) runs on one parameter
# whose gradient is always $g = 2$. We read the moments from the optimizer's
# state and correct them by hand: $\hat m = 2$ and $\hat v = 4$ at every step,
# while the raw $m$ and $v$ creep up from $0$.

# %%
show(mt.optim.Adam)
show(mt.optim.Adam._update, source=True)

theta = mt.nn.Parameter(np.zeros(1))
adam = mt.optim.Adam([theta], lr=0.1)
bias_demo = []  # (t, m, m_hat, v, v_hat, step / lr)
print("    t        m    m_hat          v    v_hat   step/lr   uncorrected m/sqrt(v)")
for t in range(1, 1001):
    before = theta.numpy().copy()
    theta.grad = np.array([2.0])
    adam.step()
    m, v = adam.state["exp_avg"][0][0], adam.state["exp_avg_sq"][0][0]
    b1, b2 = adam.betas
    row = (t, m, m / (1 - b1**t), v, v / (1 - b2**t), float((before - theta.numpy())[0]) / adam.lr)
    bias_demo.append(row)
    if t in (1, 2, 5, 10, 100, 1000):
        print(f"{t:5d} {m:8.4f} {row[2]:8.4f} {v:10.6f} {row[4]:8.4f} {row[5]:9.4f}   {m / math.sqrt(v):8.4f}")

# %% [markdown]
# ## 4. Weight decay: L2 regularisation is not decoupled decay under Adam
#
# L2 regularisation adds $\frac{\lambda}{2} \lVert \theta \rVert^2$ to the loss,
# so $\lambda \theta$ to the gradient. For plain gradient descent this is the
# same thing as shrinking the weights a little every step, "weight decay":
#
# $$
# \theta \leftarrow \theta - \eta (g + \lambda \theta) = (1 - \eta\lambda)\, \theta - \eta g .
# $$
#
# Under Adam it is not. The term $\lambda\theta$ enters $m$ *and* $v$ and gets
# divided by $\sqrt{\hat v}$, like any gradient:
#
# $$
# \Delta\theta \approx -\eta\, \frac{\widehat{(g + \lambda\theta)}}{\sqrt{\widehat{(g + \lambda\theta)^2}}} .
# $$
#
# A weight with large gradients (large $\hat v$) is hardly decayed at all. A
# weight with no loss gradient is normalised by its *own* decay term: its step
# is about $\eta\, \mathrm{sign}(\theta)$ whatever $\lambda$ is, and it is driven
# to zero at full speed. Loshchilov & Hutter (2019) *decouple* the decay from
# the adaptive step, so that every weight shrinks by the same factor:
#
# $$
# \theta \leftarrow (1 - \eta\lambda)\, \theta - \eta\, \frac{\hat m}{\sqrt{\hat v} + \epsilon} .
# $$
#
# This is `AdamW`, and it is what GPT-1 uses ("a modified version of L2
# regularisation", $\lambda = 0.01$ on all weights except biases and gains;
# in `minitensor`: `AdamW(..., weight_decay=0.01, skip_1d_decay=True)`).
#
# The demo: two weights start at $1$. The first gets a large gradient that
# flips sign every step (it averages out, so it should not move the weight
# much); the second gets no loss gradient at all. $\eta = 0.01$, $\lambda = 0.1$:
# the decoupled decay alone gives $(1 - \eta\lambda)^{500} = 0.61$.

# %%
show(mt.optim.AdamW)
decay_demo = {}
for cls in (mt.optim.Adam, mt.optim.AdamW):
    w = mt.nn.Parameter(np.ones(2))
    opt = cls([w], lr=0.01, weight_decay=0.1)
    for t in range(1, 501):
        w.grad = np.array([10.0 * (-1) ** t, 0.0])  # big but averaging to zero; none at all
        opt.step()
    decay_demo[cls.__name__] = w.numpy().copy()
    print(f"{cls.__name__:5s} (weight_decay=0.1) after 500 steps: {decay_demo[cls.__name__]}")
print(f"(1 - lr * wd) ** 500 = {(1 - 0.01 * 0.1) ** 500:.4f}")

# %% [markdown]
# ## 5. Learning-rate warmup and annealing
#
# ### Why Adam's first steps are the wildest
#
# At $t = 1$, $\hat m_1 / \sqrt{\hat v_1} = \mathrm{sign}(g_1)$: *every*
# coordinate moves by the full $\eta$, including those whose gradient is pure
# noise, at the moment the model knows least. Later, $\hat v$ averages many
# samples, and for a coordinate whose gradient is zero-mean noise of variance
# $s^2$, $\hat v \approx s^2$ while $\hat m$ is an average of noise,
#
# $$
# \operatorname{Var}[m_t] \to (1-\beta_1)^2 \sum_{j \ge 0} \beta_1^{2j}\, s^2
#   = \frac{1 - \beta_1}{1 + \beta_1}\, s^2
# \quad\Longrightarrow\quad
# E\left|\frac{\hat m}{\sqrt{\hat v}}\right|
#   \approx \sqrt{\frac{2}{\pi}} \sqrt{\frac{1-\beta_1}{1+\beta_1}} \approx 0.18
# $$
#
# (the mean absolute value of a Gaussian with that standard deviation). So the
# first steps are about five times bigger than the steady state, and for the
# first few hundred steps $\hat v$ rests on few samples: a noisy denominator.
# A warmup keeps $\eta$ small until the averages are trustworthy;
# $\beta_2 = 0.999$ remembers about $1/(1-\beta_2) = 1000$ steps, and GPT-1 warms
# up over 2000. We measure the mean $|\Delta\theta| / \eta$ of 10,000 coordinates
# fed pure noise:

# %%
noise_rng = np.random.default_rng(0)
noisy = mt.nn.Parameter(np.zeros(10_000))
adam = mt.optim.Adam([noisy], lr=1.0)
noise_steps = {}  # t -> mean |step| / lr
for t in range(1, 1001):
    before = noisy.numpy().copy()
    noisy.grad = noise_rng.standard_normal(noisy.shape)
    adam.step()
    noise_steps[t] = float(np.abs(noisy.numpy() - before).mean())
for t in (1, 2, 5, 10, 100, 1000):
    print(f"t = {t:4d}:  mean |step| / lr = {noise_steps[t]:.3f}")
print(f"steady state predicted: {math.sqrt(2 / math.pi) * math.sqrt(0.1 / 1.9):.3f}")

# %% [markdown]
# ### The GPT-1 schedule: linear warmup, cosine annealing
#
# With step $s = 0, 1, 2, \ldots$ (the number of updates done before this one),
# $W$ warmup steps, $T$ steps in all and $f = (s - W)/(T - W)$ the fraction of
# the decay done:
#
# $$
# \eta(s) = \begin{cases}
#   \eta_{\max}\, \dfrac{s + 1}{W} & s < W \\[2ex]
#   \eta_{\min} + \tfrac12 (\eta_{\max} - \eta_{\min})\,\big(1 + \cos(\pi \min(f, 1))\big) & s \ge W .
# \end{cases}
# $$
#
# The $s + 1$ makes the very first update use $\eta_{\max}/W$ rather than a
# wasted $0$, and reach $\eta_{\max}$ at $s = W - 1$. The cosine starts flat
# (the derivative of $\cos$ is $0$ at $0$: the peak is held a while), falls
# fastest half-way, and flattens again into $\eta_{\min}$, so the last steps
# are small and average out the noise of the gradient estimates. On average
# over the decay it gives $(\eta_{\max} + \eta_{\min})/2$, like a straight line.
# GPT-1 used $\eta_{\max} = 2.5 \cdot 10^{-4}$, $W = 2000$, $\eta_{\min} = 0$.
# (For fine-tuning it used a *linear* decay after a warmup over 0.2% of
# training: `mt.optim.warmup_linear`.)
#
# Schedules in `minitensor` are pure functions of the step, so a training
# loop, and its exact resume from a checkpoint, just sets `opt.lr = schedule(step)`
# before every `opt.step()`. The exercise is to write it yourself, below.


# %%
def warmup_cosine_lr(step, *, warmup, total, peak_lr, min_lr=0.0):
    r"""The learning rate for update number ``step`` (0-based): linear warmup to ``peak_lr``
    over ``warmup`` steps, then a cosine from ``peak_lr`` to ``min_lr`` reached at ``total``
    (and held after it)."""
    # BEGIN SOLUTION lesson 05: warmup_cosine_lr: the schedule of the equations above, warmup then cosine annealing
    if step < warmup:
        return peak_lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + math.cos(math.pi * frac))
    # END SOLUTION


# GPT-1's peak and warmup. The paper does not state its total number of updates:
# 100,000 here is only for the picture.
GPT1 = {"warmup": 2000, "total": 100_000, "peak_lr": 2.5e-4}
show(mt.optim.warmup_cosine)
schedule_table = []  # (step, yours, library)
print("   step     yours      library")
for step in (0, 1, 999, 1999, 2000, 10_000, 26_000, 51_000, 76_000, 99_999, 100_000, 120_000):
    yours, library = warmup_cosine_lr(step, **GPT1), mt.optim.warmup_cosine(step, **GPT1)
    schedule_table.append((step, yours, library))
    print(f"{step:7d}  {yours:.4e}  {library:.4e}")

# %%
print("the same schedule, one bar per 5,000 steps (+ the peak at step 1,999):")
for step in sorted({*range(0, GPT1["total"] + 1, 5000), GPT1["warmup"] - 1}):
    lr = warmup_cosine_lr(step, **GPT1)
    print(f"{step:7d} {lr:9.2e} " + "#" * round(50 * lr / GPT1["peak_lr"]))

# %% [markdown]
# ## 6. Gradient clipping by the global norm
#
# One unlucky batch can produce a gradient hundreds of times larger than usual,
# and a single huge step can undo hours of training. Clipping by the *global*
# norm treats all parameters' gradients as one long vector:
#
# $$
# \lVert g \rVert = \sqrt{\sum_{p} \sum_i g_{p,i}^2}, \qquad
# g \leftarrow g \cdot \min\!\Big(1, \frac{c}{\lVert g \rVert}\Big) .
# $$
#
# Only the length changes, never the direction: the clipped step is still
# along $-g$, so the first-order argument of section 1 still holds, with a
# smaller $\eta$ for this one step. Clipping each entry to $[-c, c]$ instead
# would bend the direction. (Under Adam, clipping also keeps one spike from
# inflating $v$ for the next thousand steps.) `clip_grad_norm` returns the
# norm before clipping, worth logging: it is the first sign of trouble.

# %%
show(mt.optim.clip_grad_norm)
a = mt.nn.Parameter(np.zeros(3))
b = mt.nn.Parameter(np.zeros((2, 2)))
a.grad = np.array([30.0, -40.0, 0.0])
b.grad = np.array([[0.0, 1.0], [0.5, -0.2]])
flat_before = np.concatenate([a.grad.ravel(), b.grad.ravel()])
norm_before = mt.optim.clip_grad_norm([a, b], max_norm=1.0)
flat_after = np.concatenate([a.grad.ravel(), b.grad.ravel()])
per_entry = np.clip(flat_before, -1.0, 1.0)


def cosine(u, w):
    return float(u @ w / (np.linalg.norm(u) * np.linalg.norm(w)))


print(f"norm before {norm_before:.4f}, after {np.linalg.norm(flat_after):.4f}")
print(f"cosine(original, clipped by global norm) = {cosine(flat_before, flat_after):.6f}")
print(f"cosine(original, clipped entry by entry) = {cosine(flat_before, per_entry):.6f}")

# %% [markdown]
# ## 7. SGD, momentum and Adam on the same problem
#
# Two interleaved spirals of 2-D points, one per class, and a small MLP
# ($2 \to 32 \to 32 \to 2$ with GELU) trained full-batch on the mean cross-entropy
# for 300 steps from the same initial weights. Each optimizer gets a learning
# rate typical for it (not tuned: finding each one's best rate is an exercise).
# A fourth run uses the whole GPT recipe at a toy scale: AdamW with warmup,
# cosine annealing and clipping.


# %%
def make_spirals(n_per_class, rng, turns=1.5, noise=0.05):
    """Two spirals, each 1.5 turns long, the second rotated by half a turn; labels 0 and 1."""
    labels = np.repeat(np.arange(2), n_per_class)
    radius = rng.uniform(0.1, 1.0, labels.size)
    angle = 2 * np.pi * turns * radius + np.pi * labels
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    points += noise * rng.standard_normal(points.shape)
    return points.astype(np.float32), labels


def make_mlp(rng, hidden=32):
    return mt.nn.Sequential(
        mt.nn.Linear(2, hidden, rng=rng), mt.nn.GELU(),
        mt.nn.Linear(hidden, hidden, rng=rng), mt.nn.GELU(),
        mt.nn.Linear(hidden, 2, rng=rng),
    )


STEPS = 300
RECIPES = {
    "SGD": lambda ps: mt.optim.SGD(ps, lr=0.1),
    "SGD+momentum": lambda ps: mt.optim.SGD(ps, lr=0.1, momentum=0.9),
    "Adam": lambda ps: mt.optim.Adam(ps, lr=0.01),
    "AdamW+warmup+cosine+clip": lambda ps: mt.optim.AdamW(ps, lr=0.02, weight_decay=0.01, skip_1d_decay=True),
}


def train_spirals(name, steps=STEPS, seed=0):
    """Train the MLP with the optimizer RECIPES[name]; returns (loss per step, final accuracy)."""
    points, labels = make_spirals(100, np.random.default_rng(seed))
    model = make_mlp(np.random.default_rng(seed + 1))  # the same initial weights for every optimizer
    opt = RECIPES[name](model.parameters())
    full_recipe = name.startswith("AdamW")
    peak = opt.lr
    data = mt.tensor(points)
    losses = []
    for step in range(steps):
        if full_recipe:
            opt.lr = mt.optim.warmup_cosine(step, warmup=steps // 10, total=steps, peak_lr=peak)
        loss = F.cross_entropy(model(data), labels)
        opt.zero_grad()
        loss.backward()
        if full_recipe:
            mt.optim.clip_grad_norm(model.parameters(), max_norm=1.0)
        opt.step()
        losses.append(loss.item())
    with mt.no_grad():
        accuracy = float((model(data).numpy().argmax(axis=-1) == labels).mean())
    return losses, accuracy


comparison = {name: train_spirals(name) for name in RECIPES}
print(f"{'optimizer':26s}" + "".join(f"{'step ' + str(s):>10s}" for s in (0, 50, 100, 200, STEPS - 1)) + "  accuracy")
for name, (losses, accuracy) in comparison.items():
    print(f"{name:26s}" + "".join(f"{losses[s]:10.4f}" for s in (0, 50, 100, 200, STEPS - 1)) + f"  {accuracy:8.1%}")

# %% [markdown]
# Plain SGD has hardly moved from the starting loss ($\log 2 \approx 0.69$ is a
# coin toss): the loss surface of even this small network has directions of
# very different curvature, and one learning rate cannot suit all of them
# (section 1). Momentum makes faster progress along the consistent directions
# (section 2). Adam rescales every coordinate by its own gradient history
# (section 3) and fits the spirals within the same 300 steps; the full recipe
# gets there a little sooner and ends lower, as the cosine brings the steps
# down to nothing.
#
# ## Exercises
#
# In the student copy two regions raise `NotImplementedError`:
#
# 1. **Adam's update**, `Adam._update` in `minitensor/optim.py` (section 3):
#    update the moment arrays `m` and `v` *in place* (`m *= b1`, `m += ...`: they
#    are the optimizer's state, kept between steps), then move `p.data` in place
#    by $\eta\, \hat m / (\sqrt{\hat v} + \epsilon)$ with the bias corrections of
#    step `t`. `AdamW` reuses it after its own decay.
# 2. **`warmup_cosine_lr`** in this file (section 5): the GPT-1 schedule. It must
#    agree with `mt.optim.warmup_cosine` at every step, including the first
#    update, the last warmup step, the start of the decay and steps past `total`.
#
# When both are done, the bias-correction table shows $\hat m = 2$ and $\hat v = 4$
# from the first step, and the two columns of the schedule table agree.
# `pytest -m lesson05 -k adam` checks the first on its own (those tests call the
# library directly); the rest run the whole lesson.
#
# If you want more: give SGD its best learning rate on the spirals (try 0.3, 1, 3:
# where does it diverge?) and see how much of the gap to Adam remains. Then
# remove the bias correction from your Adam and watch the first steps of the
# bias-correction table.
#
# Check your work with `pytest -m lesson05 -x` (from the repository's root; `-x` stops at the first failure).
