"""embedding_backend: fbgemm (zoo.tasks.recsys.fused): the fused table update equals the torch backend's row-wise
one, checkpoints hold plain tables that load and rank without fbgemm, and resuming restores the fused state."""

from __future__ import annotations

import copy
import sys

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.errors import ConfigError
from zoo.tasks.recsys import BPR, NeuMF, TwoTower
from zoo.tasks.recsys.base import SPARSE_MIN_ROWS, RecsysModelError, synthetic_data
from zoo.tasks.recsys.fused import FusedTableOptimizer
from zoo.tasks.recsys.optim import DenseSparseOptimizer, OptimizerStateError

MODELS = {
    "bpr": lambda **kw: BPR(embedding_dim=8, num_negatives=2, num_users=20, num_items=30, **kw),
    "neumf": lambda **kw: NeuMF(embedding_dim=8, mlp_layers=(8,), dropout=0.0, num_negatives=2, num_users=20,
                                num_items=30, **kw),
    "two_tower": lambda **kw: TwoTower(embedding_dim=8, tower_layers=(8,), num_users=20, num_items=30, **kw),
}


def _batch(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # repeated users and items: the fused kernels must sum a row's gradients before updating it, as the torch path
    return {"user": torch.randint(0, 8, (32,), generator=g), "pos": torch.randint(1, 12, (32,), generator=g),
            "neg": torch.randint(1, 31, (32, 2), generator=g)}


def _step(model, opt, batch):
    def closure():
        loss = model.task_loss(model.forward_embedded(model.embed(batch), batch), batch)
        loss.backward()
        return loss

    opt.zero_grad()
    opt.step(closure)


@pytest.mark.parametrize("table_optimizer", ["sgd", "adagrad", "rowwise_adagrad", "adam"])
@pytest.mark.parametrize("name", list(MODELS))
def test_fused_and_torch_backends_give_the_same_updates(name, table_optimizer):
    if table_optimizer == "adam" and not torch.cuda.is_available():
        pytest.skip("fbgemm's fused Adam runs on CUDA only (its CPU build refuses it)")
    torch.manual_seed(0)
    reference = MODELS[name](embedding_backend="torch", embedding_optimizer=table_optimizer, lr=0.1)
    fused = copy.deepcopy(reference)
    fused.embedding_backend = "fbgemm"
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    opts = {}
    for model in (reference, fused):
        model.train()
        opts[id(model)] = model.configure_optimizers()
    assert isinstance(opts[id(reference)], DenseSparseOptimizer)
    assert isinstance(opts[id(fused)], FusedTableOptimizer)
    for seed in (0, 1):  # two steps: the second reads the optimizer state the first left
        for model in (reference, fused):
            _step(model, opts[id(model)], _batch(seed))
    assert all(t.weight.grad is None for t in fused.sparse_tables())  # updated inside the backward, no gradient
    r, f = reference.state_dict(), fused.state_dict()
    assert set(r) == set(f)  # the fused model's state holds the same plain tables, nothing of fbgemm
    for key in r:
        # float32 summation order differs between the kernels; the dense layers' Adam (two-tower) divides by the
        # gradient's own size, so a 1e-7 difference in a table after step one shows as ~1e-5 in a tower weight
        torch.testing.assert_close(f[key], r[key], rtol=1e-4, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")
    moved = [k for k in r if not torch.equal(r[k], before[k])]
    assert {t for t in moved if "emb" in t or "gmf" in t or "mlp_" in t}  # the tables did move
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[:8] = False
    key = next(k for k in r if k in ("user_emb.weight", "gmf_user.weight"))
    torch.testing.assert_close(f[key][untouched], before[key][untouched], rtol=0, atol=0)


@pytest.mark.parametrize("kind, reference, steps", [
    ("adam", lambda ps: torch.optim.SparseAdam(ps, lr=0.1), 3),  # "lazy" Adam: what row-wise adam claims to be
    ("adagrad", lambda ps: torch.optim.Adagrad(ps, lr=0.1), 3),  # untouched rows: zero gradient, no change
    ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1), 3),
    ("sgd_momentum", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), 1),  # dense decays rows
])
def test_row_wise_update_equals_torch_optimizers_on_a_tiny_table(kind, reference, steps):
    from zoo.tasks.recsys.optim import RowWiseOptimizer

    torch.manual_seed(0)
    start = torch.randn(10, 4)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    opt = RowWiseOptimizer([ours], lr=0.1, kind=kind.split("_")[0], momentum=0.9 if kind == "sgd_momentum" else 0)
    ref = reference([theirs])
    for step in range(steps):
        g = torch.Generator().manual_seed(step)
        rows = torch.randint(0, 6, (12,), generator=g)  # repeated rows, 6-9 never touched; uncoalesced, as autograd
        grad = torch.sparse_coo_tensor(rows[None], torch.randn(12, 4, generator=g), (10, 4), check_invariants=True)
        ours.grad = grad
        theirs.grad = grad.coalesce() if kind == "adam" else grad.to_dense()
        opt.step()
        ref.step()
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-5, atol=1e-6,
                                   msg=lambda m, step=step: f"step {step}: {m}")
    assert not torch.equal(ours.detach()[:6], start[:6])
    torch.testing.assert_close(ours.detach()[6:], start[6:], rtol=0, atol=0)


def test_a_row_wise_table_read_twice_in_a_step_gets_one_gradient():
    torch.manual_seed(0)
    model = MODELS["bpr"](sparse_embeddings=True)
    model.train()
    batch = _batch(0)
    model.task_loss(model.forward_embedded(model.embed(batch), batch), batch).backward()
    grad = model.item_emb.weight.grad
    # pos and neg in one lookup: one uncoalesced gradient holding both requests' rows, in request order
    assert grad.is_sparse and not grad.is_coalesced()
    assert torch.equal(grad._indices()[0], torch.cat([batch["pos"], batch["neg"].reshape(-1)]))


def test_backend_choice_auto_and_refusals():
    rows = SPARSE_MIN_ROWS
    assert BPR(num_users=rows, num_items=10, embedding_dim=8).resolve_embedding_backend() == "torch"  # Adam
    # on CPU fbgemm's kernels measured no faster (docs/recsys.md): auto keeps torch even for an update fbgemm has
    cpu = BPR(num_users=rows, num_items=10, embedding_dim=8, embedding_optimizer="rowwise_adagrad")
    assert cpu.resolve_embedding_backend() == "torch"
    explicit = BPR(num_users=10, num_items=10, embedding_dim=8, embedding_backend="fbgemm")
    assert explicit.resolve_embedding_backend() == "fbgemm"
    with pytest.raises(RecsysModelError, match="weight_decay"):
        BPR(num_users=10, num_items=10, embedding_backend="fbgemm", weight_decay=0.1).resolve_embedding_backend()
    from zoo.tasks.recsys import MostPopular

    with pytest.raises(RecsysModelError, match="multiples of 4"):
        MostPopular(num_users=10, num_items=10, embedding_backend="fbgemm").resolve_embedding_backend()
    with pytest.raises(RecsysModelError, match="embedding_backend must be one of"):
        BPR(embedding_backend="cuda")
    adam = BPR(num_users=10, num_items=10, embedding_dim=8, embedding_backend="fbgemm")
    with pytest.raises(ConfigError, match="no fused 'adam' update"):
        adam.configure_optimizers()


def _fit(tmp, backend: str, epochs: int, ckpt_path=None, save=None):
    torch.manual_seed(0)
    model = BPR(embedding_dim=16, lr=0.5, embedding_backend=backend, embedding_optimizer="rowwise_adagrad")
    data = synthetic_data(tmp)
    trainer = quiet_trainer(max_epochs=epochs, num_sanity_val_steps=0, deterministic=True)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    if save is not None:
        trainer.save_checkpoint(save)
    return model, data, trainer


@pytest.fixture(scope="module")
def fbgemm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fused")
    path = tmp / "fbgemm.ckpt"
    model, data, trainer = _fit(tmp, "fbgemm", 2, save=path)
    assert isinstance(trainer.optimizers[0], FusedTableOptimizer)
    return model, data, path, tmp


def test_a_fbgemm_checkpoint_loads_and_tests_without_fbgemm(fbgemm_run, monkeypatch):
    model, data, path, _ = fbgemm_run
    ckpt = torch.load(path, weights_only=True)
    assert {k for k in ckpt["state_dict"] if "emb" in k} == {"user_emb.weight", "item_emb.weight"}
    expected = quiet_trainer().test(model, data, verbose=False)[0]
    monkeypatch.setitem(sys.modules, "fbgemm_gpu", None)  # as on a machine without fbgemm
    loaded = BPR.load_from_checkpoint(path)
    torch.testing.assert_close(loaded.item_emb.weight, model.item_emb.weight, rtol=0, atol=0)
    metrics = quiet_trainer().test(loaded, data, verbose=False)[0]
    assert metrics == expected
    assert metrics["test/ndcg@10"] > 0.12  # it learned: the clustered log ranked at random gets ~0.07
    with pytest.raises(ConfigError, match="fbgemm_gpu"):  # training it with fbgemm again says what is missing
        loaded.configure_optimizers()


@pytest.mark.slow
def test_resuming_a_fbgemm_run_restores_its_table_optimizer_state(fbgemm_run):
    """The torch backend's row-wise Adagrad computes what fbgemm's does; resumed from their own checkpoints,
    both must end at the same weights, which needs fbgemm's per-row accumulators back (zeroed ones differ)."""
    _, _, path, tmp = fbgemm_run
    torch_path = tmp / "torch.ckpt"
    _fit(tmp, "torch", 2, save=torch_path)
    resumed, _, trainer = _fit(tmp, "fbgemm", 3, ckpt_path=path)
    assert trainer.optimizers[0].fused.state_dict()["iter"] > 0
    reference, _, _ = _fit(tmp, "torch", 3, ckpt_path=torch_path)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-4, atol=1e-5, msg=key)
    ckpt = torch.load(path, weights_only=True)
    for table in ckpt["optimizer_states"][0]["fused"]["states"]:
        table[0].zero_()
    zeroed = tmp / "zeroed.ckpt"
    torch.save(ckpt, zeroed)
    forgetful, _, _ = _fit(tmp, "fbgemm", 3, ckpt_path=zeroed)
    assert not torch.allclose(forgetful.user_emb.weight, reference.user_emb.weight, rtol=1e-4, atol=1e-5)
    with pytest.raises(OptimizerStateError, match="fused"):
        trainer.optimizers[0].load_state_dict({"dense": None, "sparse": {}})
