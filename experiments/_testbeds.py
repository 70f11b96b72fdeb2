"""Helpers of the estimator figures on exact testbeds (not run by ``just figures``).

The closed forms and Monte-Carlo summaries they plot are in :mod:`lvm.testing`, shared
with the tests; here are what only the figures need: one colour per proposal role, the
k grid, and the one flat ``vmap`` over proposals and repetitions.
"""

import jax
import jax.numpy as jnp

#: One colour per proposal role, shared by every estimator figure.
COLORS = {
    "prior": "tab:red",
    "proposal": "tab:blue",
    "posterior": "tab:green",
    "exact": "black",
}


def log_k_grid(max_k: int, per_decade: int = 3) -> list[int]:
    """Distinct integers 1..max_k spaced evenly on a log axis (1, 2, 5, 10, 20, 50, ... for 3)."""
    steps = {1: [1], 2: [1, 3], 3: [1, 2, 5], 4: [1, 2, 3, 5]}[per_decade]
    grid = []
    decade = 1
    while decade <= max_k:
        grid += [s * decade for s in steps if s * decade <= max_k]
        decade *= 10
    return grid


def over_repetitions(estimate, key, proposals, *, num_reps: int):
    """``estimate(key, q)`` for each stacked proposal q and ``num_reps`` keys: shape (P, R).

    ``estimate`` may return a pytree of scalars; every leaf comes back with shape (P, R).

    One flat ``vmap`` over all (proposal, repetition) combinations: it compiles much faster
    than two nested ones. One rule keeps the compiled programs from hanging on this 2-core
    CPU backend (jax 0.10.2; seen in 5 runs of 8 when broken): one compiled program per
    sample size k, holding at most one chunked estimator (``lax.scan``); a program with
    several independent scans deadlocked in XLA's CPU runtime.
    """
    num_proposals = jax.tree.leaves(proposals)[0].shape[0]
    keys = jax.random.split(key, num_proposals * num_reps)

    def repeat(a):
        return jnp.repeat(a, num_reps, axis=0)

    values = jax.vmap(estimate)(keys, jax.tree.map(repeat, proposals))
    return jax.tree.map(lambda v: v.reshape(num_proposals, num_reps), values)


def stack(trees):
    """Stack a list of same-structure pytrees (e.g. proposals) along a new leading axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def categorical_kl(q, p):
    r"""Exact :math:`\mathrm{KL}(q \,\|\, p)` between two ``lvm.Categorical``: a K-term sum."""
    log_q, log_p = jax.nn.log_softmax(q.logits), jax.nn.log_softmax(p.logits)
    return jnp.sum(jnp.exp(log_q) * (log_q - log_p))
