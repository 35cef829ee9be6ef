"""Scaling helpers: checks that turn hardware / package mismatches into one clear message, the FSDP auto-wrap
policy per backbone family, and an FSDP strategy that applies it to whatever model it is given.

The overlays under ``recipes/overlays/`` set Trainer flags only; everything here is what those flags need
beyond stock Lightning.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
from typing import Any

import torch
from torch import nn

from zoo.compat import FSDPStrategyWithLateWrapPolicy
from zoo.distributed import in_process_group
from zoo.errors import ConfigError, ZooError

OVERLAYS = "recipes/overlays"


class ScaleConfigError(ZooError, ValueError):
    """A precision / strategy setting this machine or environment cannot run."""


# -- process-group teardown ------------------------------------------------------------------------------
def destroy_process_group_at_exit() -> None:
    """Destroy the default process group before the interpreter finalises, whatever its backend.

    Lightning registers this only for NCCL. A gloo (CPU) group left alive at exit keeps C++ worker threads that
    sometimes abort the process ("terminate called without an active exception", SIGABRT) after a run that
    otherwise succeeded. Called from ``ZooTask.setup``, so it also covers zoo modules in someone else's Trainer.
    """
    atexit.unregister(_destroy_default_group)  # once, however many fits set up
    atexit.register(_destroy_default_group)


def _destroy_default_group() -> None:
    if in_process_group():
        torch.distributed.destroy_process_group()


# -- per-step GPU probing on machines without a GPU -------------------------------------------------------
def stop_gpu_probing_without_gpus() -> bool:
    """Drop ``PYTORCH_NVML_BASED_CUDA_CHECK`` when this machine has no CUDA device; returns whether it did.

    Lightning sets it on import so that checking for CUDA never initialises the driver before a fork. But
    torch's Adam/AdamW ask ``torch.accelerator.is_available()`` on every step, and with the variable set, a
    CUDA build of torch on a machine without a GPU re-opens the NVML library each time (about 0.2 ms per step,
    a tenth of a small recommender's step). Without any CUDA device there is no driver state for a fork to
    break, so the plain check is safe and is answered once.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1" or not torch.backends.cuda.is_built():
        return False
    if torch.cuda.device_count() > 0:
        return False
    del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
    return True


# -- checks run by ZooCLI before the Trainer is built ------------------------------------------------------
def resolved_accelerator(accelerator: Any) -> str:
    """``cpu`` / ``gpu`` / ``mps`` / other for a Trainer ``accelerator`` flag (``auto`` resolved here)."""
    name = (accelerator if isinstance(accelerator, str)
            else type(accelerator).__name__.lower().replace("accelerator", ""))
    name = (name or "auto").lower()
    if name == "cuda":
        return "gpu"
    if name == "auto":
        if torch.cuda.is_available():
            return "gpu"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    return name


def check_devices(devices: Any, accelerator: Any) -> None:
    """More devices than the machine has is refused before any run directory exists (Lightning would start one
    process per device, each making its own ``version_N``)."""
    if devices in (None, "auto", -1, "-1") or isinstance(devices, list | tuple):
        return
    try:
        wanted = int(devices)
    except (TypeError, ValueError):
        return  # Lightning's own parser names a malformed value
    kind = resolved_accelerator(accelerator)
    if kind == "cpu":
        have, what = os.cpu_count() or 1, "CPU cores"
    elif kind == "gpu":
        have, what = torch.cuda.device_count(), "GPUs"
    else:
        return
    if wanted > have:
        raise ConfigError(f"--trainer.devices {wanted}: this machine has {have} {what}; give --trainer.devices "
                          f"{have} or fewer (or auto)")


#: ``trainer.precision: auto`` (every shipped recipe): resolved by :func:`resolve_precision` before the Trainer
PRECISION_AUTO = "auto"
#: /proc/cpuinfo flags of bf16 hardware: AMX tiles (Sapphire Rapids and later) and the AVX512-BF16 dot products
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: what bf16 autocast cost on CPUs that lack AMX (docs/results.md, "bf16 on CPU"): measured, not guessed
BF16_WITHOUT_BF16_HARDWARE = ("measured: MiniLM + LoRA at 0.5 samples/s on a 2-core AVX2 EPYC, about 5x below fp32 on "
                              "a 2-core CPU")


def cpu_flags(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; an empty set where there is no such file)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_bf16_kind(flags: set[str]) -> str | None:
    """``amx_bf16`` / ``avx512_bf16`` (the best bf16 instructions among ``flags``) or None."""
    return next((f for f in CPU_BF16_FLAGS if f in flags), None)


def resolve_precision(precision: Any, accelerator: Any, flags: set[str] | None = None,
                      fp32_reason: str | None = None) -> tuple[Any, str | None]:
    """``(precision for the Trainer, one line for the user or None)``.

    ``auto``: ``bf16-mixed`` on a CUDA GPU with bfloat16 and on a CPU with AMX-BF16 or AVX512-BF16 (on this
    project's AVX512-BF16 EPYC without AMX, bf16 autocast was as fast as fp32 or faster for MiniLM:
    ``benchmarks/bench_precision.py``), ``32-true`` elsewhere. An explicit ``bf16-mixed`` on a CPU without bf16
    instructions gets a warning with the measured slowdown; any other value passes through silently.
    ``fp32_reason``: the model's reason to stay in fp32 (its ``fp32_reason`` trait), which ``auto`` follows.
    """
    device = resolved_accelerator(accelerator)
    value = None if precision is None else str(precision)
    if value == PRECISION_AUTO and fp32_reason:
        return "32-true", f"precision auto: 32-true ({fp32_reason})"
    if device == "cpu":
        kind = cpu_bf16_kind(cpu_flags() if flags is None else flags)
        if value == PRECISION_AUTO:
            if kind:
                return "bf16-mixed", f"precision auto: bf16-mixed (this CPU has {kind})"
            return "32-true", "precision auto: 32-true (this CPU has no bf16 instructions: no avx512_bf16 / amx_bf16)"
        if value is not None and value.startswith("bf16") and kind is None:
            return precision, (f"warning: trainer.precision {value} on a CPU without bf16 instructions (no "
                               f"avx512_bf16 / amx_bf16): autocast emulates bf16, {BF16_WITHOUT_BF16_HARDWARE}; "
                               "use --trainer.precision auto (or 32-true)")
        return precision, None
    if value != PRECISION_AUTO:
        return precision, None
    if device == "gpu" and torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"precision auto: bf16-mixed ({name} has bfloat16)"
        return "32-true", f"precision auto: 32-true ({name} has no bfloat16)"
    return "32-true", f"precision auto: 32-true ({device} accelerator)"


def check_precision(precision: Any, accelerator: Any) -> None:
    """Refuse precisions the resolved hardware cannot do, naming the overlay and what it needs.

    Lightning itself silently swaps ``16-mixed`` for ``bf16-mixed`` on CPU; a run that asked for fp16 should
    not quietly train in another number format, so zoo stops instead.
    """
    if precision is None or str(precision) == PRECISION_AUTO:
        return
    value = str(precision)
    device = resolved_accelerator(accelerator)
    if value in ("16-mixed", "16", "16-true") and device == "cpu":
        raise ScaleConfigError(
            f"trainer.precision={value!r} ({OVERLAYS}/precision/16-mixed.yaml) needs a CUDA GPU: fp16 autocast "
            f"with loss scaling does not run on CPU. On CPU use {OVERLAYS}/precision/bf16-mixed.yaml "
            "(AVX512-BF16 / AMX CPUs speed it up) or precision 32."
        )
    if (value.startswith("bf16") and device == "gpu" and torch.cuda.is_available()
            and not torch.cuda.is_bf16_supported()):
        raise ScaleConfigError(
            f"trainer.precision={value!r} ({OVERLAYS}/precision/bf16-mixed.yaml) needs a GPU with bfloat16 "
            f"(NVIDIA Ampere or newer); this GPU ({torch.cuda.get_device_name()}) has none. "
            f"Use {OVERLAYS}/precision/16-mixed.yaml instead."
        )


def strategy_name(strategy: Any) -> str:
    if isinstance(strategy, str):
        return strategy
    return type(strategy).__name__ if strategy is not None else "auto"


def check_strategy(strategy: Any, accelerator: Any = "auto", sync_batchnorm: bool = False) -> None:
    """DeepSpeed is an optional extra; say how to get it instead of Lightning's generic import error.
    SyncBatchNorm needs GPUs; say so before DDP fails deep inside its setup."""
    if sync_batchnorm and resolved_accelerator(accelerator) == "cpu":
        raise ScaleConfigError(
            "trainer.sync_batchnorm=true needs GPUs (torch's SyncBatchNorm has no CPU implementation); on CPU "
            "drop it, or use a per-sample normalisation (e.g. small_cnn's backbone_kwargs norm: group)"
        )
    name = strategy_name(strategy).lower()
    if "deepspeed" in name and importlib.util.find_spec("deepspeed") is None:
        stage = "3" if "3" in name else "2"
        raise ScaleConfigError(
            f"trainer.strategy={strategy_name(strategy)!r} ({OVERLAYS}/strategy/deepspeed_zero{stage}.yaml) needs "
            "the optional DeepSpeed package, which is not installed: `pip install 'zoo[deepspeed]'` "
            "(DeepSpeed also needs CUDA GPUs and a compiler toolchain). Without it use "
            f"{OVERLAYS}/strategy/fsdp.yaml for sharded training."
        )


# -- FSDP auto-wrap policy per backbone family -------------------------------------------------------------
_HF_BLOCK_SUFFIXES = ("Layer", "Block")
_TIMM_BLOCK_SUFFIXES = ("Block", "Stage", "Layer", "Bottleneck", "BasicBlock", "Conv")


def backbone_family(module: nn.Module) -> str:
    """``hf`` (transformers), ``timm``, ``torchvision`` or ``other``, from where the model's classes live."""
    origins = {type(m).__module__.split(".", 1)[0] for m in module.modules()}
    for family, root in (("hf", "transformers"), ("timm", "timm"), ("torchvision", "torchvision")):
        if root in origins:
            return family
    return "other"


def _repeated_children(module: nn.Module) -> set[type]:
    """Classes that fill a ModuleList / Sequential of two or more same-class, non-builtin modules."""
    found: set[type] = set()
    for m in module.modules():
        if isinstance(m, nn.ModuleList | nn.Sequential) and len(m) >= 2:
            kinds = {type(c) for c in m}
            if len(kinds) == 1:
                kind = next(iter(kinds))
                if not kind.__module__.startswith("torch.") and any(True for _ in m[0].parameters()):
                    found.add(kind)
    return found


def fsdp_block_classes(module: nn.Module) -> set[type]:
    """The block classes FSDP should wrap one unit each, so that a layer's parameters are gathered only while
    that layer runs: the transformer layers of an HF encoder (``BertLayer``...), the blocks / stages of a
    timm model, the residual blocks of a torchvision ResNet. An empty set means: wrap the model as one unit
    (right for small models, where per-block sharding costs more communication than it saves)."""
    family = backbone_family(module)
    if family == "hf":
        return {type(m) for m in module.modules()
                if type(m).__module__.startswith("transformers.") and type(m).__name__.endswith(_HF_BLOCK_SUFFIXES)
                and not type(m).__name__.endswith(("Model", "Encoder")) and _inside_module_list(module, m)}
    if family in ("timm", "torchvision"):
        root = "timm." if family == "timm" else "torchvision."
        named = {type(m) for m in module.modules()
                 if type(m).__module__.startswith(root) and type(m).__name__.endswith(_TIMM_BLOCK_SUFFIXES)
                 and _inside_module_list(module, m)}
        return named | {k for k in _repeated_children(module) if k.__module__.startswith(root)}
    return _repeated_children(module)


def _inside_module_list(root: nn.Module, target: nn.Module) -> bool:
    for m in root.modules():
        if isinstance(m, nn.ModuleList | nn.Sequential) and any(c is target for c in m):
            return True
    return False


def fsdp_auto_wrap_policy(module: nn.Module) -> Any:
    """A ``ModuleWrapPolicy`` over :func:`fsdp_block_classes`, or None when the model has no repeated blocks."""
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    classes = fsdp_block_classes(module)
    return ModuleWrapPolicy(classes) if classes else None


class ZooFSDPStrategy(FSDPStrategyWithLateWrapPolicy):
    """Lightning's FSDP with the auto-wrap policy chosen from the model at wrap time (the block classes are
    only known once a task has built its network in ``setup``). An explicit ``auto_wrap_policy`` wins."""

    def choose_auto_wrap_policy(self, model: nn.Module) -> Any:
        return fsdp_auto_wrap_policy(model)


__all__ = ["ScaleConfigError", "ZooFSDPStrategy", "backbone_family", "check_precision", "check_strategy",
           "cpu_bf16_kind", "cpu_flags", "fsdp_auto_wrap_policy", "fsdp_block_classes", "resolve_precision",
           "resolved_accelerator"]
