"""Train a classifier's hidden layers by a local rule, then fit its readout in closed form.

The model is an ordinary snn5 classifier (for example ``spiking_mlp`` with Poisson input). Per
epoch: every batch is presented once with the weights fixed, each plastic layer's rule gives
``dw`` (written into ``.grad`` by :class:`PlasticityLearner`), SGD applies it, the constraints
hold the weights in shape. After the epoch the output ``Linear`` is fitted by ridge regression
on the last hidden layer's spikes filtered by the model's own readout, so the model's normal
forward pass yields the fitted scores; no gradient reaches any layer. The best epoch on the
validation set is kept, as in the gradient-based paradigms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from snn5.data import BatchLoader
from snn5.nn.neurons import NeuronBase
from snn5.train.checkpoint import (
    load_checkpoint, rng_state, save_checkpoint, set_rng_state, unprefixed,
)
from snn5.train.device import resolve_device
from snn5.train.plasticity.config import PlasticityConfig
from snn5.train.plasticity.learner import (
    Constraint, Homeostasis, Normalize, PlasticityLearner, WeightBounds,
)

log = logging.getLogger(__name__)

BEST = "best.safetensors"
LAST = "last.safetensors"


@dataclass
class PlasticityFit:
    """What :func:`fit_plasticity` did (the fields the run report shares with BPTT)."""

    history: list[dict[str, float]]
    best_epoch: int
    best_val_accuracy: float
    train_seconds: float
    steps: int


def _linears(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def hidden_layers(model: nn.Module) -> list[str]:
    """Names of the ``Linear`` layers followed by a spiking neuron (before the next Linear)."""
    names, pending = [], None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            pending = name
        elif isinstance(module, NeuronBase) and module.spiking and pending is not None:
            names.append(pending)
            pending = None
    return names


def output_layer(model: nn.Module) -> nn.Linear:
    """The last ``Linear`` of the model (hidden -> classes), the one the readout fit sets."""
    names = _linears(model)
    if not names:
        raise ValueError("the model has no Linear layer to fit as its readout")
    return dict(model.named_modules())[names[-1]]


def _constraints(cfg: PlasticityConfig) -> list[Constraint]:
    out: list[Constraint] = []
    if cfg.bounds is not None:
        out.append(WeightBounds(*cfg.bounds))
    if cfg.normalize is not None:
        out.append(Normalize(cfg.normalize))
    if cfg.homeostasis_target is not None:
        out.append(Homeostasis(cfg.homeostasis_target, cfg.homeostasis_eta))
    return out


@torch.no_grad()
def readout_features(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                     device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Features ``f [N, H]`` the output Linear sees, filtered by the model's readout, the
    readout's gain on a constant input ``s`` (the bias coefficient), and labels ``[N]``.

    With a linear readout (mean membrane of an LI integrator, or the time mean), the model's
    scores are exactly ``W f + b s``.
    """
    head = output_layer(model)
    readout = getattr(model, "readout", None)
    if readout is None:
        raise ValueError("the readout fit needs a classifier with a `readout` module "
                         "(snn5.models.SpikingClassifier)")
    if (any(isinstance(m, NeuronBase) and m.spiking for m in _after(model, head))
            or getattr(readout, "reduce", "mean") != "mean"):
        raise ValueError("the readout fit needs scores linear in the output Linear "
                         "(readout: mean_membrane); spike_count (a spiking output layer) and "
                         "max_membrane are not; set model.readout: mean_membrane")
    seen: list[Tensor] = []
    hook = head.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    feats, labels = [], []
    try:
        for x, y in batches:
            seen.clear()
            model(x.to(device))
            h = seen[-1]                                         # [T, B, H] or [1, B, H]
            feats.append(readout(h.float()))                     # [B, H]
            labels.append(y)
    finally:
        hook.remove()
    T = h.shape[0]
    gain = readout(torch.ones(T, 1, 1, device=device))[0, 0]   # readout of a constant 1
    return torch.cat(feats).cpu(), gain.cpu(), torch.cat(labels).cpu()


def _after(model: nn.Module, layer: nn.Module) -> list[nn.Module]:
    mods = list(model.modules())
    return mods[mods.index(layer) + 1:]


def ridge_fit(f: Tensor, y: Tensor, num_classes: int, *, alpha: float, gain: Tensor | float = 1.0
              ) -> tuple[Tensor, Tensor]:
    """Ridge regression of one-hot targets on features ``f [N, H]`` with a bias column ``gain``:
    minimises ``||f W^T + gain b - Y||^2 + alpha' ||W||^2`` with ``alpha' = alpha * mean(f^2) * N``.

    Returns:
        ``(W [C, H], b [C])`` in float32.
    """
    f = f.double()
    N, H = f.shape
    Y = torch.nn.functional.one_hot(y, num_classes).double()
    X = torch.cat([f, torch.full((N, 1), float(gain), dtype=torch.float64)], dim=1)
    reg = alpha * float((f * f).mean()) * N + 1e-12
    A = X.T @ X
    A[:H, :H] += reg * torch.eye(H, dtype=torch.float64)       # the bias is not penalised
    sol = torch.linalg.solve(A, X.T @ Y)                        # [H + 1, C]
    return sol[:H].T.float().contiguous(), sol[H].float()


def fit_plasticity(model: nn.Module, cfg: PlasticityConfig, train: BatchLoader,
                   val: Iterable[tuple[Tensor, Tensor]], *, num_classes: int,
                   checkpoint_dir: str | Path | None = None, seed: int = 0,
                   progress: bool | None = None, resume: bool = False,
                   epoch_callbacks: Sequence[Callable[[list[dict]], None]] = ()
                   ) -> PlasticityFit:
    """Learn the hidden layers with ``cfg.rule``, fit the readout, keep the best epoch.

    Args:
        model: a classifier whose hidden layers are ``Linear -> neuron``.
        cfg: rule, constraints, epochs, readout penalty.
        train: training batches (deterministic per epoch).
        val: validation batches (selects the best epoch).
        num_classes: C.
        checkpoint_dir: ``last``/``best`` checkpoints (``model.*`` tensors) go here.
        seed: seeds the global RNG (Poisson input) at the start.
        resume: continue after the last finished epoch in ``checkpoint_dir/last.safetensors``
            (weights, rule memories, RNG state, history), reaching the same result as an
            uninterrupted run.
        epoch_callbacks: called as ``cb(history)`` after every epoch (its checkpoint written),
            e.g. to report the validation accuracy to a hyper-parameter search.
    """
    from tqdm.auto import tqdm

    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    model.to(device).eval()                                   # no dropout; plasticity needs no train mode
    names = list(cfg.layers) if cfg.layers is not None else hidden_layers(model)
    if not names:
        raise ValueError("the model has no hidden Linear -> neuron layer to learn; give it "
                         "hidden layers (spiking_mlp: hidden: [100])")
    torch.manual_seed(seed)
    rule = cfg.build_rule()
    learner = PlasticityLearner(model, {n: rule for n in names},
                                constraints={n: _constraints(cfg) for n in names},
                                winners=cfg.winners)
    modules = dict(model.named_modules())
    if cfg.init == "uniform":
        lo, hi = cfg.bounds if cfg.bounds is not None else (0.0, 1.0)
        with torch.no_grad():
            for n in names:
                layer = modules[n]
                layer.weight.uniform_(lo, lo + cfg.init_scale * (hi - lo))
                if layer.bias is not None:
                    layer.bias.zero_()
        learner.constrain()
    opt = torch.optim.SGD(learner.parameters(), lr=cfg.lr)
    head = output_layer(model)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history, best_acc, best_epoch, steps, seconds, first = [], -1.0, -1, 0, 0.0, 0
    if resume:
        if ckpt is None or not (ckpt / LAST).is_file():
            raise FileNotFoundError(f"nothing to resume: no {LAST} in {ckpt}; start the run "
                                    "without --resume")
        tensors, meta = load_checkpoint(ckpt / LAST, device=device)
        model.load_state_dict(unprefixed("model", tensors))
        learner.load_state_dict(unprefixed("learner", tensors))
        set_rng_state(unprefixed("rng", tensors))
        history, steps, seconds = meta["history"], meta["steps"], meta["train_seconds"]
        best_acc, best_epoch, first = meta["best_val_accuracy"], meta["best_epoch"], meta["epoch"]
    for epoch in range(first, cfg.epochs):
        start = time.perf_counter()
        for x, _ in tqdm(train.batches(epoch), total=len(train), desc=f"epoch {epoch + 1}",
                         disable=None if progress is None else not progress, leave=False):
            with torch.no_grad(), learner.recording():
                model(x.to(device))
            learner.step()
            opt.step()
            opt.zero_grad(set_to_none=True)
            learner.constrain()
            steps += 1
        f, gain, y = readout_features(model, train.batches(epoch), device)
        W, b = ridge_fit(f, y, num_classes, alpha=cfg.ridge_alpha, gain=gain)
        with torch.no_grad():
            head.weight.copy_(W.to(device))
            if head.bias is None:
                raise ValueError("the output Linear needs a bias for the readout fit")
            head.bias.copy_(b.to(device))
        seconds += time.perf_counter() - start
        train_acc = _accuracy(model, [(f, y)], features=(W, b, gain))
        with torch.random.fork_rng(devices=[]):          # validation: repeatable, and it does
            torch.manual_seed(seed)                       # not disturb the training stream
            val_acc = _accuracy(model, val, device=device)
        rates = {n: float(s.post.mean()) for n, s in zip(names, learner.synapses)
                 if s.post is not None}
        history.append({"epoch": epoch, "train_accuracy": train_acc,
                        "val_accuracy": val_acc, "seconds": seconds,
                        **{f"rate/{n}": r for n, r in rates.items()}})
        log.info("epoch %d: train %.4f val %.4f (%.1f s)", epoch + 1, train_acc, val_acc, seconds)
        improved = val_acc > best_acc
        if improved:
            best_acc, best_epoch = val_acc, epoch
        if ckpt is not None:
            tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
            tensors.update({f"learner.{k}": v for k, v in learner.state_dict().items()})
            tensors.update({f"rng.{k}": v for k, v in rng_state().items()})
            meta = {"epoch": epoch + 1, "steps": steps, "val_accuracy": val_acc,
                    "train_seconds": seconds, "best_val_accuracy": best_acc,
                    "best_epoch": best_epoch, "history": history}
            if improved:
                save_checkpoint(ckpt / BEST, tensors, meta)
            save_checkpoint(ckpt / LAST, tensors, meta)
        for cb in epoch_callbacks:
            cb(history)
    return PlasticityFit(history, best_epoch, best_acc, seconds, steps)


@torch.no_grad()
def _accuracy(model: nn.Module, batches, *, device: torch.device | None = None,
              features: tuple[Tensor, Tensor, Tensor] | None = None) -> float:
    correct = total = 0
    for x, y in batches:
        if features is not None:
            W, b, gain = features
            scores = x @ W.T + gain * b
        else:
            scores = model(x.to(device)).cpu()
        correct += int((scores.argmax(1) == y).sum())
        total += len(y)
    return correct / max(total, 1)
