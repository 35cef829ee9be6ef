"""Every use of a dependency's private API, one small adapter each.

zoo leans on a handful of internals that the libraries do not promise to keep. Each one is reached only through
this module, and ``tests/architecture/test_compat.py`` pins each adapter to the installed versions: when an upgrade
moves one of them, that test fails with the adapter's name instead of a training run failing somewhere deep.
``tests/architecture/test_private_api.py`` scans the rest of zoo for a private name (``x._y``, ``from torch._x``)
of a dependency, so a new one comes here too.

This module imports no other zoo module, so every layer may use it (but it imports Lightning: the inference layer,
which runs without the training stack, cannot).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn

#: the releases each adapter below was checked against (tests/architecture/test_compat.py fails when the installed
#: ones differ, so an upgrade re-checks the adapters instead of breaking a run; update this with the lock file)
VERIFIED_WITH = {"lightning": "2.6.6", "torch": "2.14.1", "jsonargparse": "4.53.0", "wandb": "0.31.0",
                 "optuna": "5.0.0"}

#: private attribute names (``obj._name``) that zoo's own classes define but that the private-API scan cannot
#: trace to a definition in zoo (an attribute made by ``setattr`` with a computed name, say). Empty: every private
#: name zoo uses on its own objects is assigned as ``self._name`` or defined in a class or module body, which the
#: scan reads. A name added here must be zoo's own, never a dependency's.
PRIVATE_API_ALLOWED: frozenset[str] = frozenset()


# -- Lightning ----------------------------------------------------------------------------------------------
def logger_will_update(trainer: Any) -> bool | None:
    """Whether this training step's ``self.log`` values will reach a logger (``trainer._logger_connector``'s
    ``should_update_logs``), or None when the trainer has no logger connector (a bare module, a double)."""
    connector = getattr(trainer, "_logger_connector", None)
    if connector is None:
        return None
    return bool(connector.should_update_logs)


def attached_trainer(module: Any) -> Any:
    """The Trainer a LightningModule is attached to, or None (``LightningModule._trainer``): the public
    ``trainer`` property raises on a module that no Trainer runs (a task built for export, a unit test), and a
    task's hooks ask first whether there is one."""
    return module._trainer


def is_last_batch(trainer: Any) -> bool:
    """Whether the fit loop's current training batch is the epoch's last (the loop internals
    ``fit_loop.epoch_loop.batch_progress.is_last_batch``: the Trainer has no public flag for it)."""
    return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


def rich_available() -> bool:
    """Lightning's own check that ``rich`` is importable for ``RichProgressBar``."""
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    return bool(_RICH_AVAILABLE)


class FSDPStrategyWithLateWrapPolicy(FSDPStrategy):
    """Lightning's ``FSDPStrategy`` that asks :meth:`choose_auto_wrap_policy` for the auto-wrap policy when it
    wraps the model (Lightning's private ``_setup_model``): the one moment the built model is known, since a task
    may build its network from the data in ``setup``. An explicit ``auto_wrap_policy`` argument wins."""

    def choose_auto_wrap_policy(self, model: nn.Module) -> Any:
        """The auto-wrap policy for ``model``, or None to wrap it as one unit; override in a subclass."""
        return None

    def _setup_model(self, model: nn.Module) -> nn.Module:
        if "auto_wrap_policy" not in self.kwargs:
            policy = self.choose_auto_wrap_policy(model)
            if policy is not None:
                self.kwargs["auto_wrap_policy"] = policy
        return super()._setup_model(model)


class LightningCLIWithCheckpointHook(LightningCLI):
    """Lightning's ``LightningCLI`` whose step that merges a ``--ckpt_path`` checkpoint's hyper-parameters into the
    config (Lightning's private ``_parse_ckpt_path``, run by ``__init__`` after ``parse_arguments`` and before
    ``instantiate_classes``) is :meth:`merge_checkpoint_hyperparameters` instead. Lightning's own reads the file
    again without handling a bad one (a traceback), and knows only checkpoints that name their ``_class_path``."""

    def merge_checkpoint_hyperparameters(self) -> None:
        """Update ``self.config`` from the checkpoint the command starts from; override in a subclass (this one
        merges nothing)."""

    def _parse_ckpt_path(self) -> None:
        self.merge_checkpoint_hyperparameters()

    def config_value(self, config: Any, key: str, default: Any = None) -> Any:
        """``key`` of a parsed config, read under the running subcommand's section when there is one (Lightning's
        private ``_get``, which knows where each subcommand keeps its arguments)."""
        return self._get(config, key, default=default)


def wandb_init_kwargs(logger: Any) -> dict[str, Any]:
    """The keyword arguments Lightning's ``WandbLogger`` passes to ``wandb.init`` (``_wandb_init``), editable
    until the run starts: the only way to set the group and tags after the logger was built from YAML."""
    return logger._wandb_init


# -- torch ----------------------------------------------------------------------------------------------------
def is_compiled(module: nn.Module) -> bool:
    """Whether ``module.compile()`` was called on this module (torch keeps the compiled callable in
    ``_compiled_call_impl``)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def ddp_ignore(module: nn.Module, names: list[str]) -> None:
    """Keep the named parameters out of ``DistributedDataParallel`` (neither broadcast nor all-reduced): DDP reads
    the wrapped module's ``_ddp_params_and_buffers_to_ignore`` when it is built, and has no public setter (its
    ``_set_params_and_buffers_to_ignore_for_model`` is private too). The TorchRec strategy's sharded ID tables."""
    module._ddp_params_and_buffers_to_ignore = list(names)


def sparse_rows(grad: Any) -> tuple[Any, Any]:
    """(row index of each entry, the entries) of a row-sparse COO gradient as autograd made it, uncoalesced: a row
    may repeat (``Tensor._indices()`` / ``_values()``; the public ``indices()`` / ``values()`` refuse an uncoalesced
    tensor, and coalescing first would sort and sum the rows that the caller sums again)."""
    return grad._indices()[0], grad._values()


def norm_layers_with_running_stats(module: nn.Module) -> Iterator[nn.Module]:
    """BatchNorm / InstanceNorm layers that track running statistics (torch's private ``_NormBase``)."""
    from torch.nn.modules.batchnorm import _NormBase

    return (m for m in module.modules() if isinstance(m, _NormBase) and m.track_running_stats)


# -- jsonargparse ---------------------------------------------------------------------------------------------
def jsonargparse_debug_mode() -> bool:
    """jsonargparse's ``JSONARGPARSE_DEBUG`` switch, so zoo's short error messages step aside while debugging."""
    from jsonargparse._common import debug_mode_active

    return bool(debug_mode_active())


def parser_actions(parser: Any) -> list[Any]:
    """The actions of an argparse / jsonargparse parser (``_actions``: argparse has no public list of them),
    for suggesting close matches to a mistyped key."""
    return list(getattr(parser, "_actions", []))


def install_class_name_resolver(resolve: Callable[[str], str | None]) -> None:
    """Let YAML name a class by a name that ``resolve`` maps to a dotted path (zoo's registry names).

    jsonargparse resolves ``class_path`` values through ``_typehints.resolve_class_path_by_name``; zoo wraps it
    once: ``resolve(name)`` returns a dotted path or None to fall back to jsonargparse's own lookup."""
    from jsonargparse import _typehints

    if getattr(_typehints, "_zoo_resolver", None) is resolve:
        return
    original = getattr(_typehints, "_zoo_original_resolver", None) or _typehints.resolve_class_path_by_name

    def resolve_class_path_by_name(cls: Any, name: str) -> str:
        if isinstance(name, str):
            found = resolve(name)
            if found is not None:
                return found
        return original(cls, name)

    _typehints._zoo_original_resolver = original
    _typehints._zoo_resolver = resolve
    _typehints.resolve_class_path_by_name = resolve_class_path_by_name


# -- Optuna ---------------------------------------------------------------------------------------------------
def optuna_trial_id(trial: Any) -> int:
    """The storage's id of an Optuna trial (``Trial._trial_id``): what a worker process needs to report to, and
    be pruned through, the shared storage; the public ``number`` counts trials within one study only."""
    return int(trial._trial_id)


__all__ = [
    "PRIVATE_API_ALLOWED",
    "VERIFIED_WITH",
    "FSDPStrategyWithLateWrapPolicy",
    "LightningCLIWithCheckpointHook",
    "attached_trainer",
    "install_class_name_resolver",
    "is_compiled",
    "is_last_batch",
    "jsonargparse_debug_mode",
    "logger_will_update",
    "norm_layers_with_running_stats",
    "optuna_trial_id",
    "parser_actions",
    "rich_available",
    "sparse_rows",
    "wandb_init_kwargs",
]
