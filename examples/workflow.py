"""The Python workflow of the README, runnable as printed: data, a model (the library's or your
own), train, resume, load, log p(x) by IS and AIS, samples.

    python examples/workflow.py [OUT_DIR]     # about a minute on 2 CPU cores

Small on purpose (2,000 training images, a few epochs); the README's MNIST numbers come from
``experiments/vae_loglik_table.py``.
"""

import sys
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

import lvm
from lvm.data.mnist import load_binarized_mnist
from lvm.evaluate import evaluate, log_px
from lvm.models.vae import VAE, VAEConfig
from lvm.train import TrainConfig, load_model, run_keys, train

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())

# 1. Data: binarized MNIST as float32 arrays (N, 784) with values in {0, 1}.
data = load_binarized_mnist()  # BinarizedMNIST(train, validation, test): 50,000 / 10,000 / 10,000
train_x, val_x, test_x = data.train[:2000], data.validation[:500], data.test[:100]

# 2. A model is a value: the library's VAE ...
keys = run_keys(seed=0)  # init, train, validation, test: one key per consumer
vae = VAE(VAEConfig(latent_dim=8, hidden_sizes=(64,)), key=keys.init)


# ... or your own: any eqx.Module with `log_joint` and `encode(x)`, here with stock eqx.nn.MLP
# networks and a Bernoulli decoder; one datapoint in, vmapped by the library.
class MyVAE(eqx.Module):
    encoder: eqx.nn.MLP
    decoder: eqx.nn.MLP

    def __init__(self, key, latent_dim: int = 8):
        enc_key, dec_key = jax.random.split(key)
        self.encoder = eqx.nn.MLP(784, 2 * latent_dim, 64, 1, activation=jnp.tanh, key=enc_key)
        self.decoder = eqx.nn.MLP(latent_dim, 784, 64, 1, activation=jnp.tanh, key=dec_key)

    def encode(self, x):  # q(z | x)
        loc, raw = jnp.split(self.encoder(x), 2)
        return lvm.DiagonalNormal(loc, jax.nn.softplus(raw))

    def log_likelihood(self, x, z):  # log p(x | z), Bernoulli pixels
        logits = self.decoder(z)
        return jnp.sum(x * logits - jnp.logaddexp(0.0, logits))

    @property
    def log_joint(self):  # log p(z) + log p(x | z)
        prior = lvm.DiagonalNormal(jnp.zeros(8), jnp.ones(8))
        return lvm.Joint(prior, self.log_likelihood)


# 3. Train: settings in a TrainConfig, the model passed in; checkpoints and metrics in out_dir.
config = TrainConfig(objective=lvm.IWAE(5), num_epochs=2, batch_size=100, checkpoint_every=1)
result = train(vae, train_x, config, validation_x=val_x, out_dir=out / "vae")
print("VAE after 2 epochs: validation bound", round(result.history[-1]["validation_bound"], 2))
mine = train(MyVAE(keys.init), train_x, config, out_dir=out / "mine", progress=False)

# 4. Resume: the same call with more epochs continues from the checkpoint (same bytes as an
#    uninterrupted run); a checkpoint of another config or model is refused.
longer = TrainConfig(objective=lvm.IWAE(5), num_epochs=4, batch_size=100, checkpoint_every=1)
result = train(vae, train_x, longer, validation_x=val_x, out_dir=out / "vae", resume=True)

# 5. Load: the library's VAE from its header alone; your own model into a template you build.
vae = load_model(out / "vae" / "checkpoint.eqx")
mine = load_model(out / "mine" / "checkpoint.eqx", like=MyVAE(jax.random.key(0)))

# 6. log p(x): importance sampling with k = 5,000 (streamed 100 at a time), then AIS.
test_key = keys.test
is_values = log_px(test_key, vae, test_x, lvm.IWAE(5000, chunk_size=100))  # (100,) nats
ais_values = log_px(test_key, vae, test_x, lvm.AIS(200))
print(f"VAE: IS k=5000 {is_values.mean():.2f}, AIS T=200 {ais_values.mean():.2f} nats/image")
print("your model:", evaluate(test_key, mine, test_x, lvm.IWAE(500, chunk_size=100)))

# 7. Samples: z ~ p(z), x ~ p(x | z), one key per draw.
z, x = jax.vmap(vae.sample)(jax.random.split(jax.random.key(1), 16))
means = jax.vmap(vae.mean)(z)  # pixel probabilities E[x | z], (16, 784)
print("16 samples:", x.shape, "mean pixel probability", round(float(means.mean()), 3))
