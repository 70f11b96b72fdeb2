"""Exact testbeds shared by tests and experiments: models small enough that every expectation is a sum.

``amortized_mixture``: the Gaussian mixture with an amortized categorical encoder q(z|x);
``enumeration``: exact expectations (and so, by autodiff, exact gradients) of the ELBO and
IWAE bounds under a finite-support proposal, by enumerating the latent values.
"""
