r"""The PyTorch reference VAE for bench/vae_*.py: the same model, objectives and optimizer as lvm's.

Written as a competent PyTorch user would: the k samples are one extra leading tensor
axis (no Python loop over samples), the data set lives in one tensor indexed by a
random permutation (no DataLoader), ``torch.no_grad`` for evaluation, 2 threads.

Model (Burda et al. 2016, one stochastic layer): encoder 784-200-200-(50, 50) with tanh,
q(z|x) = N(loc, softplus(raw)^2); decoder 50-200-200-784 with tanh, Bernoulli logits;
prior N(0, I). Log-weights for k samples, shape (k, B):

.. math:: \log w_{ib} = \log p(x_b \mid z_{ib}) + \log p(z_{ib}) - \log q(z_{ib} \mid x_b),
          \quad z_{ib} = \mu(x_b) + \sigma(x_b) \odot \epsilon_{ib}

ELBO_k = mean_i log w, IWAE_k = logsumexp_i log w - log k; loss = -mean over the batch.

Not a project dependency: ``pip install torch==2.13.0`` (the CPU wheel) to run it.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class TorchVAE(nn.Module):
    def __init__(self, data_dim: int = 784, hidden: tuple[int, ...] = (200, 200), latent: int = 50):
        super().__init__()
        self.latent = latent
        self.encoder = _mlp([data_dim, *hidden, 2 * latent])
        self.decoder = _mlp([latent, *reversed(hidden), data_dim])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw = self.encoder(x).chunk(2, dim=-1)
        return loc, F.softplus(raw)

    def log_weights_given_q(self, x, loc, scale, num_samples: int) -> torch.Tensor:
        """(k, B) log-weights with z drawn from the given q(z|x) = N(loc, scale^2)."""
        eps = torch.randn((num_samples, *loc.shape), dtype=loc.dtype)
        z = loc + scale * eps
        logits = self.decoder(z)
        target = x.expand_as(logits)
        log_lik = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
        log_prior = -0.5 * z.square().sum(-1)
        # The 2 pi constants of log p(z) and log q(z|x) cancel.
        log_q = -0.5 * eps.square().sum(-1) - scale.log().sum(-1)
        return log_lik + log_prior - log_q

    def log_weights(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        loc, scale = self.encode(x)
        return self.log_weights_given_q(x, loc, scale, num_samples)


def elbo(log_w: torch.Tensor) -> torch.Tensor:
    return log_w.mean(0)


def iwae(log_w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


OBJECTIVES = {"elbo": elbo, "iwae": iwae}


def make_optimizer(model: TorchVAE, **kwargs) -> torch.optim.Adam:
    """Adam with the IWAE paper's betas and epsilon (the lvm defaults)."""
    return torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-4, **kwargs)


def make_train_step(model: TorchVAE, optimizer, objective: str, num_samples: int, *, compile=False):
    """A function ``step(batch) -> loss`` doing one Adam step on ``-mean_b bound(x_b)``."""
    bound = OBJECTIVES[objective]

    def loss_fn(batch):
        return -bound(model.log_weights(batch, num_samples)).mean()

    if compile:
        loss_fn = torch.compile(loss_fn)

    def step(batch):
        loss = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def train_steps(step, data: torch.Tensor, num_steps: int, batch_size: int, generator) -> float:
    """``num_steps`` steps on shuffled minibatches of ``data``; returns the last loss."""
    perm = torch.randperm(data.shape[0], generator=generator)
    for i in range(num_steps):
        loss = step(data[perm[i * batch_size : (i + 1) * batch_size]])
    return float(loss.detach())


@torch.no_grad()
def log_px(model: TorchVAE, x, *, num_samples: int, chunk_size: int, batch_size: int):
    """Importance-sampled log p(x) per row of x, streaming over chunks of particles."""
    out = []
    for xb in x.split(batch_size):
        loc, scale = model.encode(xb)
        partial = []
        for start in range(0, num_samples, chunk_size):
            c = min(chunk_size, num_samples - start)
            partial.append(torch.logsumexp(model.log_weights_given_q(xb, loc, scale, c), 0))
        out.append(torch.logsumexp(torch.stack(partial), 0) - math.log(num_samples))
    return torch.cat(out)
