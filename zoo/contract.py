"""The zoo task contract: what lets every technique work on every task.

A task splits its forward pass where the input becomes continuous::

    emb  = task.embed(batch)                 # token embeddings, pixels in [0, 1], user/item vectors
    out  = task.forward_embedded(emb, batch) # logits or scores
    loss = task.task_loss(out, batch)        # scalar

:func:`contract_training_step` is the one training step: technique callbacks (:class:`ZooTechnique`) may rewrite
the batch and the embedding and add named loss terms; the terms are summed and Lightning runs one backward, so
DDP, AMP and gradient accumulation stay Lightning's job.

Besides the three methods, a technique or a run callback may read the optional *traits* declared in
:class:`ZooTaskProtocol` (``target_key``, ``embedding_bounds``, ...). They are read through :func:`trait` /
:func:`task_hook`, which supply the declared default for a module that does not define one, so a user's own
LightningModule needs only the three methods.

This module imports no zoo package (only :mod:`zoo.errors` and :mod:`zoo.compat`, which import nothing of zoo).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from zoo.compat import attached_trainer, is_last_batch, logger_will_update, norm_layers_with_running_stats
from zoo.errors import ConfigError, ZooError

CONTRACT = ("embed", "forward_embedded", "task_loss")
#: key of a prediction row holding the example's position in its batch: the prediction writer uses it to put
#: DDP shards back in dataset order and does not write it
SAMPLE_KEY = "_sample"


class TechniqueNotApplicableError(ZooError, TypeError, ValueError):
    """A technique was configured on a module it cannot work with."""


# == the contract ===========================================================================================
class ZooTaskProtocol(Protocol):
    """Everything a technique, a run callback or the CLI may read from a task.

    Only the three methods are required; every other member is optional and has the default in
    :data:`TRAIT_DEFAULTS` (attributes) or :data:`HOOK_DEFAULTS` (methods). It documents and types the contract
    (a static checker sees it); at run time :func:`implements_contract`, :func:`trait` and :func:`task_hook` apply it.
    """

    # -- required -------------------------------------------------------------------------------------------
    def embed(self, batch: Any) -> Tensor | dict[str, Tensor]: ...

    def forward_embedded(self, emb: Tensor | dict[str, Tensor], batch: Any) -> Any: ...

    def task_loss(self, out: Any, batch: Any) -> Tensor: ...

    # -- optional attributes (defaults in TRAIT_DEFAULTS) -----------------------------------------------------
    #: batch key of the class targets; None for tasks that are not classifiers (AdversarialEvaluation, mixup)
    target_key: str | None
    #: number and names of the classes (classifiers; tags for token classifiers)
    num_classes: int | None
    class_names: list[str] | None
    #: ``task_loss`` accepts class-probability targets, so mixup / cutmix may mix labels
    soft_targets: bool
    #: what ``embed`` returns: ``pixels`` (cutmix needs them), ``tokens``, ``ids`` or plain ``embedding``
    embedding_kind: str
    #: the valid range of ``emb`` (pixels: (0, 1)); adversarial perturbations are clamped to it
    embedding_bounds: tuple[float, float] | None
    #: the headline metric checkpointing and early stopping watch, and its direction
    monitor: str
    monitor_mode: str
    #: the registry name of the backbone (run tags)
    backbone_name: str | None
    fp32_reason: str | None  # why ``precision: auto`` keeps it in fp32 on bf16 hardware (None: it does not)
    #: filled by ``zoo test``: the confusion matrix and the first misclassified examples, for reports
    last_test_confusion: Tensor | None
    misclassified: list[dict[str, Any]]
    #: how many misclassified test examples to keep (a tracking callback raises it)
    max_misclassified: int

    # -- optional hooks (defaults in HOOK_DEFAULTS) -----------------------------------------------------------
    def regularization_terms(self) -> dict[str, Tensor]:
        """Penalties of the model itself, added once per training step as ``train/loss_<name>``."""
        ...

    def update_metrics(self, stage: str, out: Any, batch: Any) -> None:
        """Update this stage's metrics with a step's (detached) output."""
        ...

    def write_test_report(self, out_dir: Any) -> list[Any]:
        """Write a human-readable test report under ``out_dir``; returns the written paths."""
        ...


TRAIT_DEFAULTS: dict[str, Any] = {
    "target_key": None,
    "num_classes": None,
    "class_names": None,
    "soft_targets": False,
    "embedding_kind": "embedding",
    "embedding_bounds": None,
    "monitor": "val/loss", "monitor_mode": "min",
    "backbone_name": None, "fp32_reason": None,
    "last_test_confusion": None,
    "misclassified": (),
    "max_misclassified": 0,
}


def _no_terms() -> dict[str, Tensor]:
    return {}


def _no_update(stage: str, out: Any, batch: Any) -> None:
    return None


def _no_report(out_dir: Any) -> list[Any]:
    return []


HOOK_DEFAULTS: dict[str, Callable[..., Any]] = {
    "regularization_terms": _no_terms,
    "update_metrics": _no_update,
    "write_test_report": _no_report,
}

#: other spellings of a hook (British for American) -> the name the contract calls: a module that defines one gets
#: a message instead of training without the penalty it meant to add
RENAMED = {"regularisation_terms": "regularization_terms"}


def trait(module: Any, name: str) -> Any:
    """``module.<name>`` for an optional attribute of :class:`ZooTaskProtocol`, or its declared default."""
    if name not in TRAIT_DEFAULTS:
        raise AttributeError(f"{name!r} is not a trait of the zoo task contract; declared: {', '.join(TRAIT_DEFAULTS)}")
    return getattr(module, name, TRAIT_DEFAULTS[name])


def task_hook(module: Any, name: str) -> Callable[..., Any]:
    """The bound optional hook ``module.<name>`` of :class:`ZooTaskProtocol`, or its declared no-op default.

    A module that defines a hook under another spelling (:data:`RENAMED`) gets a ConfigError naming the one the
    contract calls: silently ignoring it would train without the user's penalty."""
    if name not in HOOK_DEFAULTS:
        raise AttributeError(f"{name!r} is not a hook of the zoo task contract; declared: {', '.join(HOOK_DEFAULTS)}")
    for old, new in RENAMED.items():
        if new == name and callable(getattr(module, old, None)) and not callable(getattr(module, new, None)):
            raise ConfigError(f"{type(module).__name__} defines {old}(); the zoo contract calls it {new}() "
                              f"(rename the method)")
    fn = getattr(module, name, None)
    return fn if callable(fn) else HOOK_DEFAULTS[name]


def contract_stub(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a base class's placeholder for a contract method, so :func:`implements_contract` does not count it."""
    fn.__zoo_contract_stub__ = True  # type: ignore[attr-defined]
    return fn


def implements_contract(module: Any) -> list[str]:
    """Names of the contract methods ``module`` lacks (an empty list means it has them all)."""
    missing = []
    for name in CONTRACT:
        fn = getattr(module, name, None)
        if not callable(fn) or getattr(getattr(fn, "__func__", fn), "__zoo_contract_stub__", False):
            missing.append(name)
    return missing


def require_contract(module: Any, who: str) -> None:
    """Raise :class:`TechniqueNotApplicableError` when ``module`` lacks a contract method, naming ``who`` needs it."""
    missing = implements_contract(module)
    if missing:
        raise TechniqueNotApplicableError(
            f"{who} needs a module implementing the zoo task contract (embed, forward_embedded, task_loss); "
            f"{type(module).__name__} lacks {', '.join(missing)}")


# == tree helpers: emb, outputs and batches may be a tensor or a dict of tensors ==============================
def is_float_tensor(x: Any) -> bool:
    return isinstance(x, Tensor) and x.is_floating_point()


def tree_map(fn: Callable[..., Any], *trees: Any) -> Any:
    """Apply ``fn`` to every floating tensor leaf (several trees of the same shape side by side); other leaves,
    e.g. integer attention masks, are taken from the first tree unchanged."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: tree_map(fn, *(t[k] for t in trees)) for k in first}
    if is_float_tensor(first):
        return fn(*trees)
    return first


def float_leaves(tree: Any) -> list[Tensor]:
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in float_leaves(v)]
    return [tree] if is_float_tensor(tree) else []


def rebuild(tree: Any, leaves: Iterator[Any]) -> Any:
    """Put ``leaves`` back into the float-tensor positions of ``tree`` (inverse of ``float_leaves``)."""
    return tree_map(lambda _: next(leaves), tree)


def with_grad(emb: Any) -> Any:
    """Make ``emb`` (a tensor or a dict of tensors) something ``torch.autograd.grad`` can differentiate to."""
    if isinstance(emb, dict):
        return {k: with_grad(v) for k, v in emb.items()}
    if is_float_tensor(emb) and not emb.requires_grad:
        return emb.detach().requires_grad_(True)
    return emb


def detach(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: detach(v) for k, v in tree.items()}
    return tree.detach() if isinstance(tree, Tensor) else tree


def clone_tree(tree: Any) -> Any:
    """A copy of a batch whose tensors are ordinary (cloned) tensors, e.g. outside ``inference_mode``."""
    if isinstance(tree, dict):
        return {k: clone_tree(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(clone_tree(v) for v in tree)
    return tree.clone() if isinstance(tree, Tensor) else tree


def batch_size_of(batch: Any) -> int:
    if isinstance(batch, Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, Tensor) and v.ndim > 0:
                return v.shape[0]
    if isinstance(batch, list | tuple) and batch:
        return batch_size_of(batch[0])
    return 1


def hard_targets(target: Tensor) -> Tensor:
    """Class indices from index targets or from soft (mixed / smoothed) probability targets."""
    return target.argmax(-1) if target.is_floating_point() else target


@contextmanager
def frozen_buffers(module: nn.Module) -> Iterator[None]:
    """Extra forwards (adversarial, R-Drop, SMART) must not move BatchNorm running statistics: they describe the
    clean data the model is evaluated on. Restoring them afterwards would not do: the in-place update bumps the
    tensors' version and breaks the clean forward's graph, so norm layers stop tracking for the block (they
    still normalise with batch statistics in train mode, as in the clean forward)."""
    norms = list(norm_layers_with_running_stats(module))
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


# == techniques ===============================================================================================
class ZooTechnique(pl.Callback):
    """The hook every training technique plugs into.

    A technique is a Lightning ``Callback`` that :func:`contract_training_step` finds in ``trainer.callbacks``.
    Inside the single training step it may rewrite the batch (mixup) and add named loss terms computed from the
    continuous input ``emb`` (adversarial training), a second forward (R-Drop), a teacher (distillation) or the
    weights (L2-SP).
    """

    #: short name used in logged loss terms: ``train/loss_<name>``
    name: str = "technique"
    #: set when ``loss_terms`` needs ``d loss / d emb`` (adversarial methods)
    needs_embedding_grad: bool = False

    def __init__(self, start_step: int = 0, every_n_steps: int = 1, probability: float = 1.0) -> None:
        if start_step < 0:
            raise ConfigError(f"{type(self).__name__}: start_step must be >= 0, got {start_step}")
        if every_n_steps < 1:
            raise ConfigError(f"{type(self).__name__}: every_n_steps must be >= 1, got {every_n_steps}")
        if not 0.0 <= probability <= 1.0:
            raise ConfigError(f"{type(self).__name__}: probability must be in [0, 1], got {probability}")
        self.start_step = start_step
        self.every_n_steps = every_n_steps
        self.probability = probability
        self._generator = torch.Generator().manual_seed(0)

    # -- wiring ---------------------------------------------------------------------------------------------
    def check_compatible(self, module: pl.LightningModule) -> None:
        """Raise :class:`TechniqueNotApplicableError` naming what is missing."""
        require_contract(module, type(self).__name__)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.check_compatible(pl_module)

    def is_active(self, module: Any) -> bool:
        """Warm-up, frequency and probability gates, so a user can bound what a technique costs."""
        step = module.global_step
        if step < self.start_step or (step - self.start_step) % self.every_n_steps:
            return False
        if self.probability < 1.0:
            return bool(torch.rand((), generator=self._generator) < self.probability)
        return True

    # -- the things a technique may do ----------------------------------------------------------------------
    def transform_batch(self, module: Any, batch: Any) -> Any:
        return batch

    def transform_embedding(self, module: Any, batch: Any, emb: Any) -> Any:
        """Rewrite what ``embed`` returned (mixup of token embeddings); never in place."""
        return emb

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        return {}

    # -- state ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "generator" in state_dict:
            self._generator.set_state(state_dict["generator"])


def active_techniques(module: pl.LightningModule) -> list[ZooTechnique]:
    """The technique callbacks of ``module``'s trainer whose gates (warm-up, frequency, probability) open now."""
    trainer = attached_trainer(module)
    if trainer is None:
        return []
    return [cb for cb in trainer.callbacks if isinstance(cb, ZooTechnique) and cb.is_active(module)]


def step_log_moment(module: pl.LightningModule) -> str:
    """Which per-step training values to log now: ``"all"``, ``"loss"`` (only the progress bar's total) or ``""``.

    Step-level values reach a logger only every ``log_every_n_steps``, but each ``self.log`` call costs
    Lightning's bookkeeping on every step (about a fifth of a small recommender's step on CPU). So the terms are
    logged on the steps a logger will see, on the last batch of an epoch and the last step of the run (so
    ``callback_metrics`` ends each epoch with the same values as always), and the total on every step only
    while a progress bar shows it.
    """
    trainer = attached_trainer(module)
    will_update = logger_will_update(trainer) if trainer is not None else None
    if trainer is None or will_update is None:
        return "all"
    if (will_update or is_last_batch(trainer)
            or (trainer.max_steps > 0 and trainer.global_step + 1 >= trainer.max_steps)):
        return "all"
    return "loss" if trainer.progress_bar_callback is not None else ""


def contract_training_step(module: pl.LightningModule, batch: Any) -> Tensor:
    """The one training step of the zoo contract, usable from any LightningModule that implements ``embed``,
    ``forward_embedded`` and ``task_loss``:
    ``def training_step(self, batch, i): return contract_training_step(self, batch)``.

    Techniques may rewrite the batch (mixup), the embedding (mixup on token embeddings) and add named loss
    terms; the terms are summed, each logged as ``train/loss_<name>``, and the sum is returned so Lightning
    runs a single backward.
    """
    techniques = active_techniques(module)
    for technique in techniques:
        batch = technique.transform_batch(module, batch)
    emb = module.embed(batch)
    for technique in techniques:
        emb = technique.transform_embedding(module, batch, emb)
    if any(t.needs_embedding_grad for t in techniques):
        emb = with_grad(emb)
    out = module.forward_embedded(emb, batch)
    loss = module.task_loss(out, batch)
    terms: dict[str, Tensor] = {"task": loss}
    terms.update(task_hook(module, "regularization_terms")())  # the model's own penalties (AdaLoRA orthogonality)
    for technique in techniques:
        for key, value in technique.loss_terms(module, batch, emb, out, loss).items():
            if key in terms:
                raise ConfigError(f"two techniques both add a loss term named {key!r}")
            terms[key] = value
    total = torch.stack([t.float() for t in terms.values()]).sum()
    when = step_log_moment(module)
    if when:
        bs = batch_size_of(batch)
        module.log("train/loss", total, prog_bar=True, batch_size=bs)
        if when == "all":
            for key, value in terms.items():
                module.log(f"train/loss_{key}", value.detach(), batch_size=bs)
    task_hook(module, "update_metrics")("train", detach(out), batch)
    return total


__all__ = ["CONTRACT", "HOOK_DEFAULTS", "SAMPLE_KEY", "RENAMED", "TRAIT_DEFAULTS", "TechniqueNotApplicableError",
           "ZooTaskProtocol", "ZooTechnique", "active_techniques", "batch_size_of", "clone_tree", "contract_stub",
           "contract_training_step", "detach", "float_leaves", "frozen_buffers", "hard_targets", "implements_contract",
           "is_float_tensor", "rebuild", "require_contract", "step_log_moment", "task_hook", "trait", "tree_map",
           "with_grad"]
