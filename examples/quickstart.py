"""The README's API tour: log p(x) of a linear-Gaussian model by three estimators vs the exact value."""

import jax

import lvm

model_key, data_key, est_key = jax.random.split(jax.random.key(0), 3)
model = lvm.LinearGaussian.random(model_key, latent_dim=5, data_dim=20, noise_std=0.5)
_, x = model.sample(data_key)  # one datapoint, shape (20,)

exact = model.log_marginal(x)
q = model.posterior(x)  # the exact posterior p(z|x), a MultivariateNormal
loose_q = lvm.MultivariateNormal(q.loc + 0.3, 1.5 * q.scale_tril)  # a worse proposal

estimates = {
    "naive MC, z ~ p(z), k=1000": lvm.naive_monte_carlo(
        est_key, model.log_likelihood, model.prior(), x, num_samples=1000
    ),
    "IS with loose q, k=1000": lvm.importance_sampling(
        est_key, model.log_joint, loose_q, x, num_samples=1000
    ),
    "IS with q = p(z|x), k=1": lvm.importance_sampling(
        est_key, model.log_joint, q, x, num_samples=1
    ),
    "ELBO with loose q, k=1000": lvm.elbo(est_key, model.log_joint, loose_q, x, num_samples=1000),
    "streaming IS, k=5000, chunks of 500": lvm.importance_sampling(
        est_key, model.log_joint, loose_q, x, num_samples=5000, chunk_size=500
    ),
}
print(f"{'exact log p(x)':38s} {float(exact):9.3f} nats")
for name, value in estimates.items():
    print(f"{name:38s} {float(value):9.3f} nats")

# One datapoint in, vmap for a batch, jit once:
_, xs = jax.vmap(model.sample)(jax.random.split(data_key, 128))
batched = jax.jit(
    jax.vmap(
        lambda k, xi: lvm.iwae_bound(k, model.log_joint, model.posterior(xi), xi, num_samples=10)
    )
)
print(
    "batch of 128, max |IS - exact| =",
    float(
        abs(batched(jax.random.split(est_key, 128), xs) - jax.vmap(model.log_marginal)(xs)).max()
    ),
)
