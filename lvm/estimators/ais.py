r"""Annealed importance sampling (Neal, 2001) with HMC transitions, and its bidirectional check.

**The path.** Between the initial distribution q (the prior, or any proposal such as the
encoder's q(z|x)) and the unnormalised posterior p(x, z), the geometric path

.. math:: f_\beta(z) = (1-\beta)\,\log q(z) + \beta\,\log p(x, z),
          \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

with :math:`T` = ``num_steps``. For q = p(z) it is :math:`p(z)\,p(x \mid z)^\beta`, the path of
Wu, Burda, Salakhutdinov & Grosse (ICLR 2017). :math:`e^{f_0} = q` is normalised and
:math:`\int e^{f_1} dz = p(x)`.

**Forward AIS** draws :math:`z_0 \sim q` and, for t = 1 .. T - 1, moves
:math:`z_t \sim \mathcal T_t(\cdot \mid z_{t-1})` with an HMC transition that leaves
:math:`e^{f_{\beta_t}}` invariant. Its log-weight is

.. math:: \log w = \sum_{t=1}^{T} f_{\beta_t}(z_{t-1}) - f_{\beta_{t-1}}(z_{t-1})
                 = \sum_{t=1}^{T} (\beta_t - \beta_{t-1})
                   \big[\log p(x, z_{t-1}) - \log q(z_{t-1})\big],

with :math:`\mathbb E[w] = p(x)`: the log of the average weight over ``num_chains``
independent chains is a stochastic lower bound, :math:`\mathbb E[\log \hat p] \le \log p(x)`.
For T = 1 there is no transition and :math:`\log w = \log p(x, z_0) - \log q(z_0)`: importance
sampling with one particle per chain (naive Monte Carlo when q is the prior).

**Reverse AIS** (Grosse, Ghahramani & Adams, 2015) starts from an exact posterior sample
:math:`z_T \sim p(z \mid x)`, which simulated data :math:`(x, z) \sim p(x, z)` provides, and
runs the same transitions in the opposite order,

.. math:: \log w_{\rm rev} = \sum_{t=1}^{T} f_{\beta_{t-1}}(z_t) - f_{\beta_t}(z_t),
          \qquad \mathbb E[w_{\rm rev}] = 1/p(x),

so :math:`-\log` of the average reverse weight is a stochastic upper bound. Together the two
bounds sandwich log p(x) (bidirectional Monte Carlo, BDMC); the gap bounds the error of both.

**Step sizes** adapt per temperature as in Wu et al.: after the transition at
:math:`\beta_t`, the step size is multiplied by 1.02 if the acceptance probability (mean over
chains) exceeded ``target_acceptance`` and by 0.98 otherwise, kept in [1e-4, 0.5]. Each chain
then draws its step for that transition uniformly within ``step_size_jitter`` (default
+-50%) of it, as Neal (2011, Sec. 5.4.2) advises: with a fixed trajectory length, HMC on a
near-Gaussian target can return close to where it started, and the error then stalls
whatever T is (the README's AIS section gives the measurement). Since the adapted step size
depends on the
chain's past, the weights are unbiased only approximately (the effect is far below the
Monte-Carlo error in the tests); ``adapt_step_size=False`` keeps the step size fixed and the
estimator exactly unbiased. The reverse run of :func:`bdmc` reuses the forward run's step
sizes in reverse order, fixed.

**Cost** per chain: :math:`(T-1)\,L + 1` evaluations of the gradient of log p(x, z) and of
log q(z) (L = ``num_leapfrog_steps``). The annealing loop is one ``lax.scan`` over
temperatures; memory holds the chains' current state and one step size and acceptance rate
per temperature, never the trajectories.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from lvm._checks import check_finite, check_in_interval, check_positive, check_positive_int
from lvm._math import log_mean_exp
from lvm.estimators import hmc
from lvm.types import Datum, Distribution, Key, Latent, LogJoint, Scalar

#: Wu et al.'s adaptation: multiply by UP or DOWN per temperature, stay within [MIN, MAX].
STEP_SIZE_UP, STEP_SIZE_DOWN = 1.02, 0.98
MIN_STEP_SIZE, MAX_STEP_SIZE = 1e-4, 0.5


class AISInfo(NamedTuple):
    """Diagnostics of one annealing run, one entry per HMC transition (T - 1 of them)."""

    #: Metropolis acceptance probability at each transition, mean over chains.
    acceptance_rate: Float[Array, " transitions"]
    #: the step size of each transition (chain c used it times its jitter draw).
    step_size: Float[Array, " transitions"]


class BDMCResult(NamedTuple):
    """Bidirectional Monte Carlo: ``lower <= log p(x) <= upper``, each in expectation."""

    lower: Scalar
    upper: Scalar
    log_w_forward: Float[Array, " chains"]
    log_w_reverse: Float[Array, " chains"]
    forward_info: AISInfo
    reverse_info: AISInfo


def linear_schedule(num_steps: int) -> np.ndarray:
    r""":math:`\beta_t = t / T`, t = 0 .. T (float64, shape ``(T + 1,)``)."""
    num_steps = check_positive_int(num_steps, "num_steps")
    return np.linspace(0.0, 1.0, num_steps + 1)


def sigmoid_schedule(num_steps: int, *, radius: float = 4.0) -> np.ndarray:
    r"""Wu et al.'s schedule: :math:`\sigma` on an even grid of [-radius, radius], rescaled to [0, 1].

    .. math:: \tilde\beta_t = \sigma\big(r\,(2t/T - 1)\big), \qquad
              \beta_t = \frac{\tilde\beta_t - \tilde\beta_0}{\tilde\beta_T - \tilde\beta_0},

    denser near 0 and 1, where :math:`f_\beta` changes fastest for a sharp likelihood. For
    T = 1 it is (0, 1). Float64, shape ``(T + 1,)``.
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    s = 1.0 / (1.0 + np.exp(-np.linspace(-radius, radius, num_steps + 1)))
    return (s - s[0]) / (s[-1] - s[0])


def annealing_schedule(schedule, num_steps: int) -> np.ndarray:
    """The temperatures ``(beta_0 = 0, ..., beta_T = 1)`` for ``"linear"``, ``"sigmoid"`` or given ones."""
    num_steps = check_positive_int(num_steps, "num_steps")
    if isinstance(schedule, str):
        makers = {"linear": linear_schedule, "sigmoid": sigmoid_schedule}
        if schedule not in makers:
            raise ValueError(f"schedule must be 'linear', 'sigmoid' or an array, got {schedule!r}")
        return makers[schedule](num_steps)
    betas = np.asarray(schedule, np.float64)
    if betas.shape != (num_steps + 1,):
        raise ValueError(
            f"a given schedule needs num_steps + 1 = {num_steps + 1} temperatures, got shape {betas.shape}"
        )
    if betas[0] != 0.0 or betas[-1] != 1.0 or np.any(np.diff(betas) < 0):
        raise ValueError("a given schedule must rise from 0 to 1 (non-decreasing)")
    return betas


def _check_continuous_latent(z) -> None:
    """Raise ``TypeError`` unless the latent ``z`` is floating: HMC moves z along the gradient."""
    if not jnp.issubdtype(jnp.result_type(z), jnp.floating):
        raise TypeError(
            "AIS needs a continuous latent (it moves z along the gradient); got z of dtype "
            f"{jnp.result_type(z)}. A discrete latent (the Gaussian mixture) has exact "
            "log p(x) by summation, or use importance_sampling."
        )


@dataclass(frozen=True)
class AIS:
    r"""AIS as a value: its settings, checked when built, and the runs that use them.

    ``AIS(num_steps)(key, log_joint, proposal, x)`` is the estimate :math:`\log \frac1C
    \sum_c w_c` (:func:`ais`), :meth:`log_weights` the C log-weights and diagnostics
    (:func:`ais_log_weights`), :meth:`bdmc` the bidirectional sandwich (:func:`bdmc`); the
    functions are these methods with the settings as keyword arguments. Hashable (a given
    ``schedule`` is kept as a tuple), so the evaluator can compile it as a constant like
    ``IWAE``; the proposal is the initial distribution (the encoder's q(z|x) for a VAE).

    ``adapt_step_size=False`` keeps ``step_size`` fixed: the exactly unbiased variant,
    ``AIS(num_steps, adapt_step_size=False)``.
    """

    #: T >= 1, the temperatures after :math:`\beta_0 = 0`; T - 1 HMC transitions.
    num_steps: int = 1000
    #: C >= 1 independent chains.
    num_chains: int = 1
    #: L, leapfrog steps per transition (Wu et al.: 10).
    num_leapfrog_steps: int = 10
    #: ``"sigmoid"`` (Wu et al.), ``"linear"``, or the T + 1 temperatures (a sequence or an
    #: array, kept as a tuple of floats).
    schedule: str | Sequence[float] | np.ndarray = "sigmoid"
    #: the leapfrog step size; the start of the adaptation unless ``adapt_step_size=False``.
    step_size: float = 0.05
    #: the acceptance rate the adaptation aims at (Wu et al.: 0.65).
    target_acceptance: float = 0.65
    #: each chain's step at each transition is the current step size times a uniform draw
    #: from [1 - jitter, 1 + jitter]; 0 turns this off.
    step_size_jitter: float = 0.5
    #: adapt the step size per temperature (default), or keep ``step_size`` fixed.
    adapt_step_size: bool = True

    def __post_init__(self):
        check_positive_int(self.num_steps, "num_steps")
        check_positive_int(self.num_chains, "num_chains")
        check_positive_int(self.num_leapfrog_steps, "num_leapfrog_steps")
        betas = annealing_schedule(self.schedule, self.num_steps)
        if not isinstance(self.schedule, str):
            object.__setattr__(self, "schedule", tuple(betas.tolist()))
        check_in_interval(self.target_acceptance, "target_acceptance", 0.0, 1.0)
        check_positive(self.step_size, "step_size")
        check_in_interval(self.step_size_jitter, "step_size_jitter", 0.0, 1.0, closed_low=True)
        if not isinstance(self.adapt_step_size, bool):
            raise TypeError(f"adapt_step_size must be a bool, got {self.adapt_step_size!r}")

    @property
    def betas(self) -> np.ndarray:
        r"""The temperatures :math:`0 = \beta_0 \le \dots \le \beta_T = 1` (float64, ``(T + 1,)``)."""
        return annealing_schedule(self.schedule, self.num_steps)

    @property
    def num_gradient_evaluations(self) -> int:
        """Evaluations of the gradient of log p(x, z) per datapoint: C ((T - 1) L + 1)."""
        return self.num_chains * ((self.num_steps - 1) * self.num_leapfrog_steps + 1)

    def log_weights(
        self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum
    ) -> tuple[Float[Array, " chains"], AISInfo]:
        r"""The log-weights :math:`\log w_c` of the C forward chains, and diagnostics.

        ``key`` is split once into the initial draws' key (chain c starts from
        ``proposal.sample(split(init_key, num_chains)[c])``, as particle c of
        :func:`lvm.log_weights`) and the transitions' key. ``log_joint(x, z)`` is
        log p(x, z) for one x and one continuous z; ``proposal`` the initial distribution q.

        Returns ``(log_w, info)``: log-weights of shape ``(num_chains,)`` with
        :math:`\mathbb E[w] = p(x)`, and :class:`AISInfo` per transition.
        """
        x = check_finite(x)
        init_key, transition_key = jax.random.split(key)
        z0 = jax.vmap(proposal.sample)(jax.random.split(init_key, self.num_chains))
        _check_continuous_latent(z0)
        terms = _terms_fn(log_joint, proposal, x)
        return _anneal(
            transition_key, terms, z0, self.betas, self.step_size, self, self.adapt_step_size
        )

    def __call__(self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum) -> Scalar:
        r"""The AIS estimate :math:`\log \frac1C \sum_c w_c` of log p(x): a lower bound in expectation."""
        return log_mean_exp(self.log_weights(key, log_joint, proposal, x)[0])

    def bdmc(
        self, key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum, z: Latent
    ) -> BDMCResult:
        r"""Bidirectional Monte Carlo (Grosse et al., 2015): forward AIS below, reverse AIS above.

        For simulated data, ``(z, x)`` drawn from the joint (``model.sample(key)``), ``z`` is
        an exact draw from p(z|x). The forward run is :meth:`log_weights`; the reverse run
        starts C chains at ``z`` and anneals from :math:`\beta = 1` down to 0 with the
        forward run's step sizes in reverse order, fixed, so both use the same transitions:

        .. math:: \text{lower} = \log \tfrac1C \textstyle\sum_c w_c, \qquad
                  \text{upper} = -\log \tfrac1C \textstyle\sum_c w^{\rm rev}_c,
                  \qquad \mathbb E[\text{lower}] \le \log p(x) \le \mathbb E[\text{upper}].

        ``key`` is split once into the forward and the reverse run's keys.
        """
        _check_continuous_latent(z)
        forward_key, reverse_key = jax.random.split(key)
        log_w, forward_info = self.log_weights(forward_key, log_joint, proposal, x)
        z_start = jnp.broadcast_to(z, (self.num_chains,) + jnp.shape(z))
        log_w_rev, reverse_info = _anneal(
            reverse_key,
            _terms_fn(log_joint, proposal, x),
            z_start,
            self.betas[::-1],
            forward_info.step_size[::-1],
            self,
            False,
        )
        return BDMCResult(
            log_mean_exp(log_w),
            -log_mean_exp(log_w_rev),
            log_w,
            log_w_rev,
            forward_info,
            reverse_info,
        )


def ais_log_weights(
    key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum, *, num_steps: int, **settings
) -> tuple[Float[Array, " chains"], AISInfo]:
    r"""The log-weights :math:`\log w_c` of ``num_chains`` forward AIS chains, and diagnostics.

    ``AIS(num_steps, **settings).log_weights(key, log_joint, proposal, x)``: the settings are
    the fields of :class:`AIS` (``num_chains=1``, ``schedule="sigmoid"``,
    ``num_leapfrog_steps=10``, ``step_size=0.05``, ``target_acceptance=0.65``,
    ``step_size_jitter=0.5``, ``adapt_step_size=True``), checked when it is built.

    Returns:
        ``(log_w, info)``: log-weights of shape ``(num_chains,)`` with :math:`\mathbb E[w] = p(x)`,
        and :class:`AISInfo` (acceptance rate and step size per transition).
    """
    return AIS(num_steps, **settings).log_weights(key, log_joint, proposal, x)


def ais(
    key: Key, log_joint: LogJoint, proposal: Distribution, x: Datum, *, num_steps: int, **settings
) -> Scalar:
    r"""The AIS estimate :math:`\log \frac1C \sum_c w_c` of log p(x): a lower bound in expectation.

    ``AIS(num_steps, **settings)(key, log_joint, proposal, x)``; the settings as for
    :func:`ais_log_weights`.
    """
    return AIS(num_steps, **settings)(key, log_joint, proposal, x)


def bdmc(
    key: Key,
    log_joint: LogJoint,
    proposal: Distribution,
    x: Datum,
    z: Latent,
    *,
    num_steps: int,
    **settings,
) -> BDMCResult:
    r"""Bidirectional Monte Carlo (Grosse et al., 2015): forward AIS below, reverse AIS above.

    ``AIS(num_steps, **settings).bdmc(key, log_joint, proposal, x, z)`` (see
    :meth:`AIS.bdmc`); the settings as for :func:`ais_log_weights`.
    """
    return AIS(num_steps, **settings).bdmc(key, log_joint, proposal, x, z)


class _Terms(NamedTuple):
    """The two terms of the path at one z, with their gradients (kept in the HMC state)."""

    log_q: Scalar
    log_joint: Scalar
    grad_log_q: Float[Array, " d"]
    grad_log_joint: Float[Array, " d"]


def _terms_fn(log_joint: LogJoint, proposal: Distribution, x: Datum):
    def terms(z):
        log_q, grad_log_q = jax.value_and_grad(proposal.log_prob)(z)
        log_p, grad_log_p = jax.value_and_grad(lambda zz: log_joint(x, zz))(z)
        return _Terms(log_q, log_p, grad_log_q, grad_log_p)

    return terms


def _tempered_state(position, terms: _Terms, beta) -> hmc.HMCState:
    r"""The HMC state of :math:`f_\beta` at ``position`` from the cached terms: no new gradient."""
    log_density = (1.0 - beta) * terms.log_q + beta * terms.log_joint
    grad = (1.0 - beta) * terms.grad_log_q + beta * terms.grad_log_joint
    return hmc.HMCState(position, log_density, grad, terms)


def _value_and_grad_at(terms, beta) -> hmc.ValueAndGrad:
    r"""``value_and_grad`` of :math:`f_\beta`, with the two terms as auxiliary output."""

    def value_and_grad(z):
        state = _tempered_state(z, terms(z), beta)
        return (state.log_density, state.aux), state.grad

    return value_and_grad


def _anneal(
    key: Key,
    terms,
    z0: Float[Array, "chains d"],
    betas: np.ndarray,
    step_size,
    settings: AIS,
    adapt: bool,
) -> tuple[Float[Array, " chains"], AISInfo]:
    r"""Run chains started at ``z0`` (exact draws from :math:`e^{f_{\beta_0}}`) along ``betas``.

    ``step_size``: the initial step size when ``adapt``, else one per transition (or a scalar).
    ``settings`` gives L, the target acceptance and the jitter (its ``num_steps`` and
    ``schedule`` are those of ``betas``, possibly reversed). Transition t (t = 1 .. T - 1)
    draws with ``fold_in(key, t)``, split once into the chains' HMC keys and their
    step-size jitter.
    """
    num_chains, dtype = z0.shape[0], z0.dtype
    num_transitions = len(betas) - 2
    jitter_width = settings.step_size_jitter
    if adapt:
        step0 = jnp.asarray(step_size, dtype)
        fixed_steps = jnp.zeros((num_transitions,), dtype)  # not read
    else:
        step0 = jnp.zeros((), dtype)  # not read
        fixed_steps = jnp.broadcast_to(jnp.asarray(step_size, dtype), (num_transitions,))

    def increment(beta_now, beta_prev, cached: _Terms):
        # f_now(z) - f_prev(z), linear in beta: no subtraction of two large numbers.
        return (beta_now - beta_prev) * (cached.log_joint - cached.log_q)

    def transition(carry, inputs):
        position, cached, log_w, eps = carry
        t, beta_prev, beta, fixed_eps = inputs
        log_w = log_w + increment(beta, beta_prev, cached)
        eps_t = eps if adapt else fixed_eps

        def move(k, z, c, eps_c):
            state, info = hmc.step(
                k,
                _tempered_state(z, c, beta),
                _value_and_grad_at(terms, beta),
                step_size=eps_c,
                num_leapfrog_steps=settings.num_leapfrog_steps,
            )
            return state.position, state.aux, info.acceptance_rate

        move_key, jitter_key = jax.random.split(jax.random.fold_in(key, t))
        jitter = jax.random.uniform(
            jitter_key, (num_chains,), dtype, 1.0 - jitter_width, 1.0 + jitter_width
        )
        keys = jax.random.split(move_key, num_chains)
        position, cached, accept = jax.vmap(move)(keys, position, cached, eps_t * jitter)
        accept = jnp.mean(accept)
        if adapt:
            factor = jnp.where(accept > settings.target_acceptance, STEP_SIZE_UP, STEP_SIZE_DOWN)
            eps = jnp.clip(eps * factor, MIN_STEP_SIZE, MAX_STEP_SIZE).astype(dtype)
        return (position, cached, log_w, eps), (accept, eps_t)

    inputs = (
        jnp.arange(1, num_transitions + 1),
        jnp.asarray(betas[:-2], dtype),
        jnp.asarray(betas[1:-1], dtype),
        fixed_steps,
    )
    carry = (z0, jax.vmap(terms)(z0), jnp.zeros((num_chains,), dtype), step0)
    (_, cached, log_w, _), (accept, used) = jax.lax.scan(transition, carry, inputs)
    log_w = log_w + increment(float(betas[-1]), float(betas[-2]), cached)
    assert log_w.shape == (num_chains,)
    return log_w, AISInfo(accept, used)
