"""FGM + R-Drop under 2-process DDP (CPU, gloo) match one process with the same global batch; bf16-mixed and
gradient accumulation train."""

from __future__ import annotations

import math
import os
import socket

import lightning.pytorch as pl
import pytest
import torch

from tests.common.helpers import quiet_trainer
from tests.common.technique_doubles import text_case
from zoo.techniques import FGM, RDrop

STEPS = 3
GLOBAL_BATCH = 8


def _techniques():
    return [FGM(eps=0.5), RDrop(alpha=1.0)]


def _fit(batch_size: int, **trainer_kwargs) -> dict[str, torch.Tensor]:
    pl.seed_everything(0, verbose=False)
    model, data = text_case(batch_size=batch_size, n_train=48, dropout=0.3, optimizer="sgd", lr=0.5)
    trainer = quiet_trainer(max_steps=STEPS, limit_val_batches=0, num_sanity_val_steps=0,
                            callbacks=_techniques(), **trainer_kwargs)
    trainer.fit(model, data)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    # processes are made here, so Lightning must not launch its own: LOCAL_RANK etc. tell it so
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    torch.set_num_threads(1)
    state = _fit(GLOBAL_BATCH // world, strategy="ddp", devices=world, use_distributed_sampler=False)
    if rank == 0:
        torch.save(state, out)
    # multiprocessing children leave through os._exit, which skips the atexit teardown zoo registers; a gloo
    # group left alive can abort the process on its way out
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
@pytest.mark.timeout(600)
def test_ddp_two_processes_match_one_process(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "ddp_state.pt")
    # fork: the children reuse the parent's imports (lightning costs ~10 s per fresh process here)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), out), nprocs=2, start_method="fork", join=True)
    ddp = torch.load(out, weights_only=True)
    single = _fit(GLOBAL_BATCH)
    assert set(ddp) == set(single)
    pl.seed_everything(0, verbose=False)
    initial = text_case(dropout=0.3)[0].state_dict()  # same seed-0 init as both runs
    for key, value in single.items():
        if not value.is_floating_point():
            continue
        diff = float((ddp[key] - value).abs().max())
        assert diff < 1e-5, f"{key} differs between DDP and 1 process by {diff:.3g}"
    assert any(not torch.equal(single[k], initial[k]) for k in single if single[k].is_floating_point())


def test_bf16_mixed_trains_with_adversarial_and_rdrop():
    pl.seed_everything(0, verbose=False)
    model, data = text_case()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0, precision="bf16-mixed", log_every_n_steps=1,
                            callbacks=_techniques())
    trainer.fit(model, data)
    assert all(math.isfinite(float(trainer.callback_metrics[k])) for k in ("train/loss_fgm", "train/loss_rdrop"))
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters())



def test_gradient_accumulation_keeps_one_backward_per_batch(monkeypatch):
    calls = []
    original = torch.autograd.backward
    monkeypatch.setattr(torch.autograd, "backward", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    pl.seed_everything(0, verbose=False)
    model, data = text_case()
    trainer = quiet_trainer(max_steps=2, accumulate_grad_batches=2, limit_val_batches=0, callbacks=_techniques())
    trainer.fit(model, data)
    assert trainer.global_step == 2 and len(calls) == 4
