r"""Double-float arithmetic: a value held as an unevaluated sum hi + lo of two floats.

EM's M-step subtracts nearly equal numbers: a component's covariance is
:math:`\Sigma_k = \mathbb E_k[x x^\top] - \mu_k\mu_k^\top`, and when the component sits
far from the origin compared with its width, both terms are ~|μ_k|² while their
difference is the component's variance. In float32 the rounding of
:math:`\mathbb E_k[x x^\top]` alone is then an error of relative size
:math:`\varepsilon |\mu_k|^2 / \lambda_{\min}(\Sigma_k)`. Carrying the sums as
(hi, lo) pairs keeps about twice the working precision through that subtraction, at
the cost of a few extra operations on (K, F) numbers, never on the (N, F) data.

The building blocks are error-free transformations: ``two_sum`` (Knuth, TAOCP vol. 2)
returns s + e = a + b exactly, ``two_prod`` (Dekker, 1971, with Veltkamp's split)
returns p + e = a b exactly; the pair operations follow Dekker (1971) and
Ogita, Rump & Oishi (2005, "Accurate sum and dot product"). They rely on IEEE rounding
with no reassociation, which XLA keeps on CPU and GPU.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


class Pair(NamedTuple):
    """The number hi + lo, with |lo| at most about one unit in the last place of hi."""

    hi: Float[Array, "..."]
    lo: Float[Array, "..."]

    @property
    def value(self) -> Float[Array, "..."]:
        return self.hi + self.lo


def pair(x) -> Pair:
    """``x`` as a pair with a zero low part."""
    return Pair(x, jnp.zeros_like(x))


def two_sum(a, b) -> Pair:
    """s + e = a + b exactly, with s = fl(a + b) (Knuth)."""
    s = a + b
    b_virtual = s - a
    return Pair(s, (a - (s - b_virtual)) + (b - b_virtual))


def _split(a):
    """a = hi + lo with hi holding the upper half of the significand (Veltkamp)."""
    bits = jnp.finfo(jnp.result_type(a)).nmant + 1
    t = (2.0 ** ((bits + 1) // 2) + 1.0) * a
    hi = t - (t - a)
    return hi, a - hi


def two_prod(a, b) -> Pair:
    """p + e = a b exactly, with p = fl(a b) (Dekker)."""
    p = a * b
    a_hi, a_lo = _split(a)
    b_hi, b_lo = _split(b)
    return Pair(p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo)


def _renormalise(s, e) -> Pair:
    t = s + e
    return Pair(t, e - (t - s))


def add(x: Pair, y: Pair) -> Pair:
    s = two_sum(x.hi, y.hi)
    return _renormalise(s.hi, s.lo + (x.lo + y.lo))


def sub(x: Pair, y: Pair) -> Pair:
    return add(x, Pair(-y.hi, -y.lo))


def mul(x: Pair, y: Pair) -> Pair:
    p = two_prod(x.hi, y.hi)
    return _renormalise(p.hi, p.lo + (x.hi * y.lo + x.lo * y.hi))


def div(x: Pair, y: Pair) -> Pair:
    q = x.hi / y.hi
    r = sub(x, mul(pair(q), y))
    return _renormalise(q, r.hi / y.hi)


def accumulate(total: Pair, x) -> Pair:
    """total + x for a plain float x: compensated (Kahan-Babuska) running sum."""
    s = two_sum(total.hi, x)
    return Pair(s.hi, total.lo + s.lo)


def sum_pairs(x: Pair, axis: int = 0) -> Pair:
    """The sum of a pair array along ``axis``, in order, in pair arithmetic."""
    hi, lo = jnp.moveaxis(x.hi, axis, 0), jnp.moveaxis(x.lo, axis, 0)

    def step(total, item):
        return add(total, Pair(*item)), None

    total, _ = jax.lax.scan(step, Pair(hi[0], lo[0]), (hi[1:], lo[1:]))
    return total
