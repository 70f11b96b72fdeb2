r"""The VAE runs shared by the ``vae_*`` figures and the MNIST estimator figures (not run by
``just figures``): the :class:`Budget` and its flags, the models, the training cache.

Runs are shared. The models that several figures use (VAE k=1, 5, 50 and IWAE k=5, 50)
are trained once and kept under ``--runs-dir`` (default ``runs/vae``, git-ignored), one
folder per run named after the model and a fingerprint of every setting except the
number of epochs. A script that finds a run's checkpoint loads it (or trains it further
when more epochs are asked for, through ``lvm.train.train(..., resume=True)``); a script
that does not, trains it. So each script works alone on a fresh clone, and
``just figures`` trains each model once.

Budgets (one frozen :class:`Budget`, chosen by flags):

* default: 5 epochs for every 784-200-200-50 model, Adam at a constant 1e-3, the full
  50,000 training and 10,000 validation images; test log p(x) with k = 5,000 on the first
  1,000 test images; the 2-D latent model 20 epochs. This is what fits in well under
  45 minutes on a 2-core CPU (the two k = 50 models dominate: about 1 min per epoch each).
* ``--paper-budget``: Burda et al. (2016): 3,280 epochs with their schedule (learning rate
  1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7), the full 10,000-image test set. For a GPU.
* ``--quick``: a tiny model on 500 images for one epoch, k = 64 for log p(x): seconds.
"""

import argparse
import dataclasses
import functools
import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import _script
import equinox as eqx
import jax
import numpy as np

from lvm import ELBO, IWAE, DiagonalNormal, sample_n
from lvm.data.mnist import BinarizedMNIST, load_binarized_mnist
from lvm.models.sbn import BernoulliVAE, BernoulliVAEConfig
from lvm.models.vae import VAE, VAEConfig, init_pseudo_inputs
from lvm.models.vae2 import TwoLayerVAE, TwoLayerVAEConfig
from lvm.train import TrainConfig, run_keys, train


def parse_args(argv, description: str) -> argparse.Namespace:
    """Parse the flags of every script (``_script.parser``) and the budget flags.

    The namespace also holds ``budget``, the :class:`Budget` the flags select, and
    ``runs_dir``.
    """
    parser = _script.parser(description)
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help="where trained runs are kept and shared between scripts "
        "(default runs/vae; with --quick, runs/vae-quick)",
    )
    parser.add_argument(
        "--paper-budget",
        action="store_true",
        help="Burda et al.'s budget: 3,280 epochs, their learning-rate schedule, full test set",
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the 50-D models")
    parser.add_argument(
        "--num-test", type=int, default=None, help="test images for log p(x) (0 = all 10,000)"
    )
    args = parser.parse_args(argv)
    if args.quick and args.paper_budget:
        parser.error("--quick and --paper-budget exclude each other")
    budget = Budget()
    if args.paper_budget:
        budget = budget.paper()
    if args.quick:
        budget = budget.quick()
    if args.epochs is not None:
        budget = replace(budget, num_epochs=args.epochs)
    if args.num_test is not None:
        budget = replace(budget, num_test=args.num_test or None)
    if args.runs_dir is None:
        args.runs_dir = Path("runs/vae-quick" if args.quick else "runs/vae")
    args.budget = budget
    return args


#: The models shared by the learning-curve, sample and log-likelihood figures.
#: "VAE k" = the ELBO averaged over k samples; "IWAE k" = the bound L_k (Burda et al., 2016);
#: "IWAE k, DReG" = the same bound trained with the doubly reparameterized gradient
#: (Tucker et al., 2019): same objective, lower-variance encoder gradient. "VAE k=1, IAF q":
#: the ELBO with q(z|x) an inverse autoregressive flow on the encoder's Gaussian (Kingma et
#: al., 2016; ``VAEConfig(posterior="iaf")``: two IAF layers of 200 units conditioned on the
#: encoder's last hidden layer). "VampPrior" = the one-layer VAE with a VampPrior (Tomczak & Welling, 2018); "2 layers" = two stochastic
#: layers (Burda et al., 2016): their models are in :data:`ARCHITECTURES`.
RUNS = {
    "vae_k1": ELBO(1),
    "vae_k5": ELBO(5),
    "vae_k50": ELBO(50),
    "iwae_k5": IWAE(5),
    "iwae_k50": IWAE(50),
    "iwae_k5_dreg": IWAE(5, gradient="dreg"),
    "iwae_k50_dreg": IWAE(50, gradient="dreg"),
    # 200 binary latents (BernoulliVAE, the REBAR/RELAX papers' "nonlinear" MNIST model), no
    # pathwise gradient: NVIL (ELBO, score function, input-dependent baseline, variance
    # normalization; Mnih & Gregor, 2014), VIMCO (IWAE k=5; Mnih & Rezende, 2016) and the
    # biased Concrete relaxation at temperature 2/3 (Maddison et al., 2017).
    "sbn_nvil": ELBO(1, gradient="reinforce", baseline="learned", normalize=True),
    "sbn_vimco_k5": IWAE(5, gradient="vimco"),
    "sbn_concrete": ELBO(1, gradient="concrete", temperature=2 / 3),
    "vae_iaf_k1": ELBO(1),
    "vae_vamp_k1": ELBO(1),
    "vae2l_k1": ELBO(1),
    "iwae2l_k5": IWAE(5),
}
#: The runs whose latents are binary: no posterior mean for active units, no AIS (HMC
#: needs a continuous z); their published numbers are training ELBOs (:data:`PUBLISHED_TRAIN_ELBO`).
DISCRETE_RUNS = ("sbn_nvil", "sbn_vimco_k5", "sbn_concrete")
#: Runs reported as a paired difference against another run on the same test images.
PAIRED_WITH = {"iwae_k5_dreg": "iwae_k5", "iwae_k50_dreg": "iwae_k50"}
LABELS = {
    "vae_k1": "VAE, k=1",
    "vae_k5": "VAE, k=5",
    "vae_k50": "VAE, k=50",
    "iwae_k5": "IWAE, k=5",
    "iwae_k50": "IWAE, k=50",
    "iwae_k5_dreg": "IWAE, k=5, DReG",
    "iwae_k50_dreg": "IWAE, k=50, DReG",
    "sbn_nvil": "200 binary z, NVIL",
    "sbn_vimco_k5": "200 binary z, VIMCO k=5",
    "sbn_concrete": "200 binary z, Concrete τ=2/3",
    "vae_iaf_k1": "VAE, k=1, IAF q",
    "vae_vamp_k1": "VAE, VampPrior, k=1",
    "vae2l_k1": "VAE, 2 layers, k=1",
    "iwae2l_k5": "IWAE, 2 layers, k=5",
    "vae2d_k1": "VAE, 2-D latent, k=1",
}
RUN_COLORS = {
    "vae_k1": "tab:gray",
    "vae_k5": "tab:cyan",
    "vae_k50": "tab:blue",
    "iwae_k5": "tab:orange",
    "iwae_k50": "tab:red",
    "iwae_k5_dreg": "tab:olive",
    "iwae_k50_dreg": "tab:purple",
    "sbn_nvil": "tab:brown",
    "sbn_vimco_k5": "tab:pink",
    "sbn_concrete": "tab:green",
    "vae_iaf_k1": "tab:green",
    "vae_vamp_k1": "tab:brown",
    "vae2l_k1": "tab:pink",
    "iwae2l_k5": "tab:green",
}

#: Burda et al. (2016), Table 1, MNIST, one stochastic layer (784-200-200-50, tanh),
#: 3,280 epochs, MNIST re-binarized at random for every minibatch (dynamic binarization):
#: test log p(x) estimated with k = 5,000, and active units.
PUBLISHED = {
    "vae_k1": (-86.76, 19),
    "vae_k5": (-86.47, 20),
    "vae_k50": (-86.35, 20),
    "iwae_k5": (-85.54, 22),
    "iwae_k50": (-84.78, 25),
    # Not in Burda et al.; Tucker et al. (2019) used other architectures and report no such row.
    "iwae_k5_dreg": (None, None),
    "iwae_k50_dreg": (None, None),
    # Binary latents: no published test log p(x) for this model under these estimators; the
    # published numbers are training ELBOs, in PUBLISHED_TRAIN_ELBO, never in this column.
    "sbn_nvil": (None, None),
    "sbn_vimco_k5": (None, None),
    "sbn_concrete": (None, None),
    # Kingma et al. (2016) report their IAF VAEs with convolutional ResNet encoders and
    # decoders, not this MLP: no comparable published row.
    "vae_iaf_k1": (None, None),
    # Tomczak & Welling (2018) and Burda et al.'s two-layer rows: not yet checked against the
    # papers, so not shown.
    "vae_vamp_k1": (None, None),
    "vae2l_k1": (None, None),
    "iwae2l_k5": (None, None),
}
PUBLISHED_SOURCE = (
    "Burda, Grosse & Salakhutdinov (2016), Importance Weighted Autoencoders, Table 1: "
    "MNIST with dynamic binarization, one stochastic layer, 3,280 epochs"
)
#: Grathwohl et al. (2018), Backpropagation through the Void, "nonlinear" MNIST
#: (one layer of 200 Bernoulli latents, two 200-unit tanh layers each way): the
#: TRAINING ELBO (k = 1) of each estimator, not a test log p(x). Estimators we do not train
#: (MuProp, REBAR, RELAX) are kept for the note under the table.
PUBLISHED_TRAIN_ELBO = {
    "Concrete": -102.2,
    "NVIL": -101.5,
    "MuProp": -101.1,
    "REBAR": -81.01,
    "RELAX": -78.13,
}
#: Our discrete runs by the name of their published row.
PUBLISHED_TRAIN_ELBO_ROW = {"sbn_nvil": "NVIL", "sbn_concrete": "Concrete"}
PUBLISHED_TRAIN_ELBO_SOURCE = (
    "Grathwohl, Choi, Wu, Roeder & Duvenaud (2018), Backpropagation through the Void, "
    "MNIST, nonlinear model (200 binary latents, 784-200-200-200 tanh): training "
    "ELBO, trained far longer than our 5 epochs (their exact number of steps not re-checked here)"
)


@dataclass(frozen=True)
class Budget:
    """How long, and on how much data, the models are trained and evaluated."""

    num_epochs: int = 5
    #: the 2-D latent model is cheap (its cost is that of a k=1 VAE), so it gets more epochs.
    num_epochs_2d: int = 20
    schedule: str = "constant"
    learning_rate: float = 1e-3
    hidden_sizes: tuple[int, ...] = (200, 200)
    latent_dim: int = 50
    #: the VampPrior's K (Tomczak & Welling, 2018), initialised from the first K training images
    num_pseudo_inputs: int = 500
    #: the two-stochastic-layer model (Burda et al., 2016): sizes of (z1, z2), and the hidden
    #: layers between x and z1 and between z1 and z2
    two_layer_latent_dims: tuple[int, int] = (100, 50)
    two_layer_hidden_sizes: tuple[tuple[int, ...], tuple[int, ...]] = ((200, 200), (100, 100))
    #: None = the whole split (50,000 / 10,000); else the first n images in TFDS's order.
    num_train: int | None = None
    num_validation: int | None = None
    #: test images for the k = 5,000 log p(x) (None = all 10,000); ELBO and active units
    #: always use the whole test split.
    num_test: int | None = 1000
    eval_num_samples: int = 5000
    eval_chunk_size: int = 100
    checkpoint_every: int = 5
    #: binary latents of the discrete runs (:data:`DISCRETE_RUNS`); their hidden layers are
    #: ``hidden_sizes``.
    bernoulli_latent_dim: int = 200
    #: hidden width of NVIL's input-dependent baseline network (Mnih & Gregor, 2014: 100).
    nvil_baseline_hidden: int = 100

    def quick(self) -> "Budget":
        return replace(
            self,
            num_epochs=1,
            num_epochs_2d=1,
            hidden_sizes=(32,),
            latent_dim=4,
            num_pseudo_inputs=50,
            two_layer_latent_dims=(8, 4),
            two_layer_hidden_sizes=((32,), (16,)),
            num_train=500,
            num_validation=100,
            num_test=20,
            eval_num_samples=64,
            eval_chunk_size=16,
            bernoulli_latent_dim=8,
            nvil_baseline_hidden=16,
        )

    def paper(self) -> "Budget":
        return replace(self, num_epochs=3280, num_epochs_2d=3280, schedule="iwae", num_test=None)


@functools.cache
def _all_splits() -> BinarizedMNIST:
    # Read once per process: the smoke tests run every script in one process.
    return load_binarized_mnist()


def load_data(budget: Budget) -> BinarizedMNIST:
    """Binarized MNIST (TFDS, static binarization), each split cut to the budget's size."""
    data = _all_splits()
    return BinarizedMNIST(
        train=data.train[: budget.num_train],
        validation=data.validation[: budget.num_validation],
        test=data.test,
    )


def model_config(name: str, budget: Budget) -> VAEConfig:
    """The library VAE's architecture for run ``name`` (a key of :data:`RUNS`, or ``"vae2d_k1"``)
    whose model is not in :data:`ARCHITECTURES`."""
    latent_dim = 2 if name == "vae2d_k1" else budget.latent_dim
    posterior = "iaf" if name == "vae_iaf_k1" else "gaussian"
    return VAEConfig(latent_dim=latent_dim, hidden_sizes=budget.hidden_sizes, posterior=posterior)


#: Runs whose model is not the library VAE of :func:`model_config`: name -> ``f(budget, data)``
#: returning ``(description, build)``, a hashable description of the architecture (it enters
#: the run folder's fingerprint) and ``build(key) -> model`` (any amortized model; ``data``
#: for initialisations that look at the training images, e.g. pseudo-inputs).
def _vamp(budget: Budget, data: BinarizedMNIST | None):
    """The library VAE with a VampPrior, its K pseudo-inputs the first K training images."""
    num = budget.num_pseudo_inputs
    config = replace(model_config("vae_vamp_k1", budget), prior="vamp", num_pseudo_inputs=num)
    if data is None or len(data.train) < num:
        raise ValueError(
            f"the VampPrior run initialises its pseudo-inputs from {num} training images"
        )
    images = np.asarray(data.train[:num])

    def build(key):
        return init_pseudo_inputs(VAE(config, key=key), images)

    return (config, f"pseudo-inputs: the first {num} training images"), build


def _two_layer(budget: Budget, data: BinarizedMNIST | None):
    """Burda et al.'s two stochastic layers, :class:`lvm.TwoLayerVAE`."""
    config = TwoLayerVAEConfig(
        latent_dims=budget.two_layer_latent_dims, hidden_sizes=budget.two_layer_hidden_sizes
    )
    return config, functools.partial(TwoLayerVAE, config)


ARCHITECTURES: dict = {"vae_vamp_k1": _vamp, "vae2l_k1": _two_layer, "iwae2l_k5": _two_layer}


def _bernoulli_vae(name: str, budget: Budget, data: BinarizedMNIST | None = None):
    """The binary-latent model of a discrete run: :class:`lvm.BernoulliVAE` with learned prior
    logits; NVIL's run also gets the input-dependent baseline network."""
    config = BernoulliVAEConfig(
        latent_dim=budget.bernoulli_latent_dim,
        hidden_sizes=budget.hidden_sizes,
        baseline_hidden=budget.nvil_baseline_hidden if name == "sbn_nvil" else None,
    )
    return config, functools.partial(BernoulliVAE, config)


ARCHITECTURES.update({name: functools.partial(_bernoulli_vae, name) for name in DISCRETE_RUNS})


def architecture(name: str, budget: Budget, data: BinarizedMNIST | None = None):
    """``(description, build)`` of run ``name``'s model: :data:`ARCHITECTURES`, else the library
    VAE of :func:`model_config`."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name](budget, data)
    config = model_config(name, budget)
    return config, functools.partial(VAE, config)


def train_config(name: str, budget: Budget, *, seed: int) -> TrainConfig:
    """The :class:`TrainConfig` of run ``name`` (a key of :data:`RUNS`, or ``"vae2d_k1"``)."""
    latent_2d = name == "vae2d_k1"
    return TrainConfig(
        objective=ELBO(1) if latent_2d else RUNS[name],
        num_epochs=budget.num_epochs_2d if latent_2d else budget.num_epochs,
        learning_rate=budget.learning_rate,
        schedule=budget.schedule,
        seed=seed,
        checkpoint_every=budget.checkpoint_every,
        eval_every=1,
    )


class EvalKeys(NamedTuple):
    """The test-time branches of ``lvm.train.run_keys(seed).test``, one per consumer."""

    log_px: jax.Array
    elbo: jax.Array
    prior_samples: jax.Array
    reconstructions: jax.Array
    ais: jax.Array
    ais_vs_is: jax.Array


def eval_keys(seed: int) -> EvalKeys:
    """``split(run_keys(seed).test, 6)``: never a key that training (init, epochs, validation)
    draws with. ``log_px`` and ``elbo`` are the two keys ``lvm.evaluate.evaluate(test, ...)``
    splits its key into (``split(k, 6)[i] == split(k, 2)[i]`` for i < 2 with jax's threefry),
    so the figures' test numbers are those of ``python -m lvm.train`` with the same seed."""
    return EvalKeys(*jax.random.split(run_keys(seed).test, 6))


def run_dir(runs_dir: Path, name: str, config: TrainConfig, num_train: int, model) -> Path:
    """``<runs_dir>/<name>-<fingerprint>``: the fingerprint covers the architecture ``model``
    and every setting but the epoch settings.

    Runs that differ only in ``num_epochs`` share a folder, so asking for more epochs
    extends a run instead of starting again.
    """
    epoch_settings = {"num_epochs", "checkpoint_every", "eval_every"}
    settings = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in epoch_settings
    }
    settings["num_train"] = num_train
    settings["model"] = _non_default_fields(model)
    fingerprint = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:10]
    return runs_dir / f"{name}-{fingerprint}"


def _non_default_fields(description):
    """A dataclass description by its class name and the fields that differ from their
    defaults, so that a new option with a default (a new ``VAEConfig`` field) leaves the
    folders of existing runs where they are; a tuple entry by entry; any other description
    as it is."""
    if isinstance(description, tuple):
        return tuple(_non_default_fields(d) for d in description)
    if not dataclasses.is_dataclass(description):
        return description
    changed = tuple(
        (f.name, getattr(description, f.name))
        for f in dataclasses.fields(description)
        if f.default is dataclasses.MISSING or getattr(description, f.name) != f.default
    )
    return (type(description).__name__, changed)


def trained(name: str, budget: Budget, data: BinarizedMNIST, *, seed: int, runs_dir: Path):
    """Train run ``name`` to the budget, or load (and extend) it from its checkpoint.

    Returns ``lvm.train.TrainResult(model, state, history)``; ``history`` holds every epoch
    of the run, with the training and validation bound of the run's own objective.
    """
    config = train_config(name, budget, seed=seed)
    description, build = architecture(name, budget, data)
    out_dir = run_dir(runs_dir, name, config, len(data.train), description)
    resume = (out_dir / "checkpoint.eqx").is_file()
    print(f"[{name}] {'resuming' if resume else 'training'} -> {out_dir}", flush=True)
    result = train(
        build(key=run_keys(seed).init),
        data.train,
        config,
        validation_x=data.validation,
        out_dir=out_dir,
        resume=resume,
        progress=True,
    )
    if len(result.history) != config.num_epochs:
        raise ValueError(
            f"{out_dir} holds a run of {len(result.history)} epochs, {config.num_epochs} asked "
            "for: pass --epochs to match it or another --runs-dir"
        )
    return result


class MomentMatchedQ(eqx.Module):
    """``model`` with its q(z|x) replaced by the diagonal Gaussian of the same mean and standard
    deviations, estimated from ``num_samples`` draws (``key``, the same for every x), when q is
    not a :class:`lvm.DiagonalNormal` (an IAF q); a Gaussian q is kept as it is.

    For the numbers that need q's mean (active units) or its density at arbitrary points many
    times (AIS starts from q and scores every HMC position under it: for an IAF, an inversion,
    50 sequential MADE passes per layer, which made AIS on 100 images take most of an hour).
    AIS from another normalized start estimates the same log p(x).
    """

    model: eqx.Module
    key: jax.Array
    num_samples: int = eqx.field(static=True)

    @property
    def log_joint(self):
        return self.model.log_joint

    def encode(self, x) -> DiagonalNormal:
        q = self.model.encode(x)
        if isinstance(q, DiagonalNormal):
            return q
        zs = sample_n(self.key, q, self.num_samples)
        return DiagonalNormal(zs.mean(0), zs.std(0))

    def validate_data(self, x, name: str = "x"):
        return self.model.validate_data(x, name=name)


def has_gaussian_q(model, x) -> bool:
    """Whether ``model.encode(x)`` is a :class:`lvm.DiagonalNormal` (traced, not run)."""
    return isinstance(eqx.filter_eval_shape(model.encode, x), DiagonalNormal)


def image_grid(images: np.ndarray, num_cols: int, pad: int = 1) -> np.ndarray:
    """Tile (n, 784) images into one 2-D array, ``num_cols`` per row, ``pad`` pixels apart."""
    images = np.asarray(images).reshape(-1, 28, 28)
    num_rows = math.ceil(len(images) / num_cols)
    size = 28 + pad
    grid = np.ones((num_rows * size + pad, num_cols * size + pad), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, num_cols)
        grid[pad + r * size : pad + r * size + 28, pad + c * size : pad + c * size + 28] = image
    return grid
