"""Train a VAE on binarized MNIST from the command line, then evaluate it on the test set.

    python -m lvm.train --objective iwae --num-samples 5 --epochs 10 --out-dir runs/iwae5 [--resume]

Writes ``<out-dir>/checkpoint.eqx``, ``metrics.jsonl``, ``config.json`` and, unless
``--eval-num-samples 0``, ``eval.json`` (test log p(x) by importance sampling, or with
``--eval-method ais --ais-steps T`` by annealed importance sampling from q(z|x); test
ELBO, active units), evaluated with the run's own ``test`` key (:func:`lvm.train.run_keys`).
``--schedule iwae --epochs 3280`` is the IWAE paper's full budget. ``--objective`` is one
of the library's (``elbo``, ``iwae``, ``elbo-kl``, with ``--num-samples``) or any importable
function with the estimator signature, ``--objective mypkg.mymodule:my_bound``: the command
line imports the name you type; a checkpoint only records it, and ``--resume`` refuses a
checkpoint whose record differs from the objective given now.

Training that meets a NaN or Inf loss or gradient stops with a message naming the epoch
and the step, and exits with status 1 (``--nonfinite skip`` skips such updates instead);
so does a checkpoint that cannot be resumed, and an ``--out-dir`` that another live run is
training into.
"""

import argparse
import importlib
import json
from pathlib import Path

from lvm.data.mnist import load_binarized_mnist
from lvm.estimators import AIS, ELBO, IWAE, ELBOAnalyticKL
from lvm.evaluate import evaluate
from lvm.models.vae import VAEConfig
from lvm.train.checkpoint import CheckpointError
from lvm.train.config import TrainConfig
from lvm.train.loop import NonFiniteError, RunLockedError, run_keys, train_vae

OBJECTIVES = {"elbo": ELBO, "iwae": IWAE, "elbo-kl": ELBOAnalyticKL}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lvm.train", description=__doc__.splitlines()[0])
    p.add_argument(
        "--objective",
        default="elbo",
        help=f"one of {sorted(OBJECTIVES)}, or module:function for your own bound",
    )
    p.add_argument("--num-samples", type=int, default=None, help="k of the objective (default 1)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--schedule", choices=("constant", "iwae"), default="constant")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--latent-dim", type=int, default=50)
    p.add_argument("--hidden-sizes", type=int, nargs="+", default=[200, 200])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=5)
    p.add_argument(
        "--nonfinite",
        choices=("raise", "skip"),
        default="raise",
        help="on a NaN/Inf loss or gradient: stop with an error, or skip the update",
    )
    p.add_argument(
        "--eval-num-samples", type=int, default=5000, help="k for test log p(x); 0: skip"
    )
    p.add_argument(
        "--eval-method",
        choices=("is", "ais"),
        default="is",
        help="test log p(x) by importance sampling (k = --eval-num-samples) or by AIS from q(z|x)",
    )
    p.add_argument(
        "--ais-steps", type=int, default=1000, help="temperatures of AIS (--eval-method ais)"
    )
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--manual-dir", default=None, help="folder of the .amat(.gz) files")
    p.add_argument("--data-dir", default=None, help="TFDS data dir")
    return p.parse_args(argv)


def _objective(name: str, num_samples: int | None):
    if name in OBJECTIVES:
        return OBJECTIVES[name](num_samples=1 if num_samples is None else num_samples)
    if ":" not in name:
        raise SystemExit(
            f"--objective must be one of {sorted(OBJECTIVES)} or module:function, got {name!r}"
        )
    if num_samples is not None:
        raise SystemExit("--num-samples applies to the library's objectives only")
    # The user typed this name on the command line: importing it is what they asked for.
    # (A checkpoint's record of it is never imported.)
    module, _, qualname = name.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as err:
        raise SystemExit(f"--objective {name}: cannot import it ({err})") from err
    if not callable(obj):
        raise SystemExit(f"--objective {name}: not callable")
    return obj


def main(argv=None) -> dict:
    args = parse_args(argv)
    model_config = VAEConfig(latent_dim=args.latent_dim, hidden_sizes=tuple(args.hidden_sizes))
    config = TrainConfig(
        objective=_objective(args.objective, args.num_samples),
        num_epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        schedule=args.schedule,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        nonfinite=args.nonfinite,
    )
    data = load_binarized_mnist(manual_dir=args.manual_dir, data_dir=args.data_dir)
    try:
        result = train_vae(
            config,
            data.train,
            model_config=model_config,
            validation_x=data.validation,
            out_dir=args.out_dir,
            resume=args.resume,
        )
    except (NonFiniteError, CheckpointError, RunLockedError) as err:
        raise SystemExit(f"python -m lvm.train: {type(err).__name__}: {err}") from err
    summary = {"config": config.to_dict(), "final": result.history[-1] if result.history else None}
    if args.eval_num_samples:
        estimator = (
            IWAE(args.eval_num_samples, chunk_size=100)
            if args.eval_method == "is"
            else AIS(args.ais_steps)
        )
        test = evaluate(run_keys(args.seed).test, result.model, data.test, estimator)
        summary["test"] = test._asdict()
        (args.out_dir / "eval.json").write_text(json.dumps(summary["test"], indent=2))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
