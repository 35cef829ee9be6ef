"""Recommenders at scale: row-wise sparse updates of ID tables, the streaming reader, evaluation in bounded user
blocks, FAISS top-K; and what a user sees of the catalogue (item names beside predictions, the popularity baseline,
the item text a text-aware model reads)."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.data.recsys import InteractionDataModule
from zoo.tasks.recsys import BPR, NeuMF, TwoTower
from zoo.tasks.recsys.base import SPARSE_MIN_ROWS, RecsysModelError
from zoo.tasks.recsys.optim import DenseSparseOptimizer


def _batch(num_users: int, num_items: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"user": torch.randint(0, num_users, (32,), generator=g),
            "pos": torch.randint(1, num_items + 1, (32,), generator=g),
            "neg": torch.randint(1, num_items + 1, (32, 2), generator=g)}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("make", [
    lambda: BPR(embedding_dim=8, num_negatives=2, num_users=20, num_items=30, sparse_embeddings=True),
    lambda: NeuMF(embedding_dim=8, mlp_layers=(8,), dropout=0.0, num_negatives=2, num_users=20, num_items=30,
                  sparse_embeddings=True),
    lambda: TwoTower(embedding_dim=8, tower_layers=(8,), num_users=20, num_items=30, sparse_embeddings=True),
], ids=["bpr", "neumf", "two_tower"])
def test_sparse_and_dense_paths_give_the_same_first_update(make, optimizer):
    torch.manual_seed(0)
    sparse_model = make()
    sparse_model.optimizer_name, sparse_model.lr = optimizer, 0.1
    dense_model = copy.deepcopy(sparse_model)
    dense_model.sparse_embeddings = False
    dense_model.build()  # built already: only marks the tables dense again
    assert all(t.sparse for t in sparse_model.sparse_tables())
    assert not any(t.sparse for t in dense_model.sparse_tables())
    batch = _batch(20, 30)
    before = {k: v.clone() for k, v in dense_model.state_dict().items()}
    # Adam is invariant to the loss scale except for eps, which SparseAdam adds before the bias correction of the
    # second moment (the Adam paper's order) and torch's Adam after it: a large scale puts eps out of play
    scale = 1.0 if optimizer == "sgd" else 1e6
    for model in (sparse_model, dense_model):
        opt = model.configure_optimizers()
        assert isinstance(opt, DenseSparseOptimizer) == (model is sparse_model)

        def closure(model=model):
            loss = model.task_loss(model.forward_embedded(model.embed(batch), batch), batch)
            (loss * scale).backward()
            return loss

        opt.zero_grad()
        opt.step(closure)
    grads = [t.weight.grad for t in sparse_model.sparse_tables()]
    assert all(g is not None and g.is_sparse for g in grads)
    s, d = sparse_model.state_dict(), dense_model.state_dict()
    changed = 0
    for key in s:
        torch.testing.assert_close(s[key], d[key], rtol=1e-5, atol=1e-6, msg=lambda m, key=key: f"{key}: {m}")
        changed += int(not torch.equal(s[key], before[key]))
    assert changed >= 2  # the step moved the tables: the comparison is not of two untouched models
    # rows the batch did not touch keep their values on the sparse path
    rows = torch.ones(20, dtype=torch.bool)
    rows[batch["user"]] = False
    key = next(k for k in before if k in ("user_emb.weight", "gmf_user.weight"))
    torch.testing.assert_close(s[key][rows], before[key][rows], rtol=0, atol=0)


@pytest.mark.parametrize("setting, rows, expected", [
    ("auto", 2_000, False), ("auto", SPARSE_MIN_ROWS, True), (True, 2_000, True), (False, SPARSE_MIN_ROWS, False),
])
def test_auto_turns_row_wise_updates_on_for_large_tables_only(setting, rows, expected):
    # small tables are cheaper to update whole (ml-100k: row-wise 1.7x slower per epoch); large ones are not
    model = BPR(embedding_dim=2, num_users=rows // 2, num_items=rows - rows // 2 - 1, sparse_embeddings=setting)
    assert sum(t.num_embeddings for t in model.sparse_tables()) == rows
    assert all(t.sparse == expected for t in model.sparse_tables())
    assert isinstance(model.configure_optimizers(), DenseSparseOptimizer) == expected


def test_a_bad_sparse_embeddings_value_is_refused():
    with pytest.raises(RecsysModelError, match="sparse_embeddings must be true, false or auto"):
        BPR(num_users=3, num_items=3, sparse_embeddings="yes")


def test_sparse_optimizer_state_round_trips_and_a_dense_state_is_refused():
    model = BPR(embedding_dim=4, num_users=5, num_items=6, sparse_embeddings=True)
    opt = model.configure_optimizers()
    batch = _batch(5, 6)
    opt.zero_grad()
    opt.step(lambda: model.task_loss(model.forward_embedded(model.embed(batch), batch), batch).backward())
    state = opt.state_dict()
    fresh = BPR(embedding_dim=4, num_users=5, num_items=6, sparse_embeddings=True).configure_optimizers()
    fresh.load_state_dict(state)
    assert fresh.state_dict()["sparse"]["state"][0]["step"] == state["sparse"]["state"][0]["step"]
    from zoo.tasks.recsys.optim import OptimizerStateError

    with pytest.raises(OptimizerStateError, match="sparse_embeddings: false"):
        fresh.load_state_dict(torch.optim.Adam(model.parameters()).state_dict())


@pytest.mark.slow
def test_fit_with_sparse_tables_learns_and_a_lr_schedule_reaches_every_group(tmp_path):
    from zoo.tasks.recsys.base import synthetic_data

    torch.manual_seed(0)
    model = BPR(embedding_dim=16, lr=0.05, scheduler="linear", warmup_ratio=0.1, sparse_embeddings=True)
    data = synthetic_data(tmp_path)
    trainer = quiet_trainer(max_epochs=10, num_sanity_val_steps=0)
    trainer.fit(model, data)
    opt = trainer.optimizers[0]
    assert isinstance(opt, DenseSparseOptimizer)
    assert all(g["lr"] < 0.05 for g in opt.param_groups)  # the schedule decayed the sparse group too
    assert model.item_emb.sparse and model.user_emb.sparse
    assert trainer.callback_metrics["val/ndcg@10"] > 0.12  # clustered log: dense Adam gets 0.155, random ~0.07


# -- streaming reader ------------------------------------------------------------------------------------------
def _log_file(tmp_path, fmt: str = "csv"):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    n = 600
    df = pd.DataFrame({"userId": rng.zipf(1.6, n) % 60, "movieId": [f"m{v}" for v in rng.zipf(1.4, n) % 90],
                       "rating": rng.integers(1, 6, n), "timestamp": rng.integers(0, 50, n)})  # ties in time
    path = tmp_path / f"log.{fmt}"
    if fmt == "parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


def _reference(path, seed, split, **kw):
    """Today's reader before streaming: the whole log as a frame, processed with the frame functions."""
    import numpy as np

    from zoo.data.recsys import assign_split, handle_duplicates, k_core, read_table, standardise_interactions

    raw, _ = read_table(path)
    inter = handle_duplicates(standardise_interactions(raw, str(path)), "first", str(path))
    inter = inter[inter["rating"] >= kw["implicit_threshold"]]
    inter = k_core(inter, kw["user_core"], kw["item_core"])
    user_ids = sorted(inter["user"].unique().tolist())
    item_ids = ["[PAD]"] + sorted(inter["item"].unique().tolist())
    users = inter["user"].map({u: k for k, u in enumerate(user_ids)}).to_numpy(np.int64)
    items = inter["item"].map({u: k for k, u in enumerate(item_ids)}).to_numpy(np.int64)
    order = np.lexsort((inter["row"].to_numpy(), inter["timestamp"].to_numpy(float))).argsort()
    if split == "random":
        part = assign_split(users, np.random.default_rng(seed).permutation(len(users)), "random", (0.8, 0.1, 0.1))
    else:
        part = assign_split(users, order, split, (0.8, 0.1, 0.1))
    return user_ids, item_ids, users, items, part


@pytest.mark.parametrize("fmt,split", [("csv", "random"), ("parquet", "temporal"), ("csv", "loo")])
def test_streaming_reader_gives_the_same_id_maps_and_splits(tmp_path, fmt, split):
    import numpy as np

    path = _log_file(tmp_path, fmt)
    kw = dict(implicit_threshold=2, user_core=3, item_core=2)
    user_ids, item_ids, users, items, part = _reference(path, 7, split, **kw)
    for chunk_rows in (37, 10 ** 6):  # many chunks (an id's first and later rows in different chunks), and one
        dm = InteractionDataModule(path=str(path), split=split, seed=7, duplicates="first", chunk_rows=chunk_rows, **kw)
        dm.prepare()
        assert dm.user_ids == user_ids and dm.item_ids == item_ids
        for k, stage in enumerate(("train", "val", "test")):
            got = sorted(zip(dm.parts[stage][0].tolist(), dm.parts[stage][1].tolist()))
            want = sorted(zip(users[part == k].tolist(), items[part == k].tolist()))
            assert got == want, f"{stage} differs with chunk_rows={chunk_rows}"
    assert len(np.unique(users)) < 60  # the k-core and threshold did drop ids: the comparison covers filtering


def test_streaming_reader_names_the_file_row_of_a_bad_value_in_a_later_chunk(tmp_path):
    from zoo.data.recsys import RecsysDataError

    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,rating\n" + "".join(f"u{i},i{i},4\n" for i in range(20)) + "u9,i3,oops\n")
    with pytest.raises(RecsysDataError, match=r"log.csv: data row 21 has rating 'oops'"):
        InteractionDataModule(path=str(path), chunk_rows=6).prepare()
    path.write_text("user_id,item_id\n" + "".join(f"u{i},i{i}\n" for i in range(20)) + "u3,i3\n")
    with pytest.raises(RecsysDataError, match=r"user 'u3' and item 'i3' occur more than once \(data rows \[4, 21\]"):
        InteractionDataModule(path=str(path), chunk_rows=6).prepare()


# -- evaluation in bounded blocks, FAISS top-K ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_bpr(tmp_path_factory):
    from zoo.tasks.recsys.base import synthetic_data

    torch.manual_seed(0)
    model, data = BPR(embedding_dim=16, lr=0.05), synthetic_data(tmp_path_factory.mktemp("bpr"))
    quiet_trainer(max_epochs=3, num_sanity_val_steps=0, limit_val_batches=0).fit(model, data)
    return model, data


@pytest.mark.slow
def test_evaluation_in_small_user_blocks_gives_the_same_metrics(trained_bpr, monkeypatch):
    import zoo.data.recsys.datamodule as dm_module
    from zoo.tasks.recsys.base import synthetic_data

    model, data = trained_bpr
    whole = quiet_trainer().test(model, data, verbose=False)[0]
    monkeypatch.setattr(dm_module, "EVAL_BLOCK_CELLS", 3 * (data.num_items + 1))  # 3 users per block
    small = synthetic_data(None)
    model.bind_data(small)
    assert small.eval_block_size() == 3 and len(small.test_dataloader()) > 10
    blocks = quiet_trainer().test(model, small, verbose=False)[0]
    assert blocks.keys() == whole.keys()
    for key in whole:
        assert blocks[key] == pytest.approx(whole[key], abs=1e-6), key


def test_faiss_top_k_agrees_with_exact_top_k():
    from zoo.tasks.recsys.retrieval import FaissIndex, recall_at_k

    g = torch.Generator().manual_seed(0)
    items, users = torch.randn(2001, 16, generator=g), torch.randn(64, 16, generator=g)
    exclude = torch.zeros(64, 2001, dtype=torch.bool)
    exclude[:, 0] = True
    exclude[torch.arange(64), torch.randint(1, 2001, (64,), generator=g)] = True  # one seen item per user
    exact_scores = (users @ items.T).masked_fill(exclude, float("-inf"))
    exact_s, exact = exact_scores.topk(10, dim=1)
    approx_s, approx = FaissIndex(items).search(users, 10, exclude)
    assert not exclude.gather(1, approx).any()  # seen items filtered after the search
    assert recall_at_k(approx, exact) >= 0.95
    # the scores returned are the true inner products of the items returned
    torch.testing.assert_close(approx_s, (users[:, None, :] * items[approx]).sum(-1), rtol=1e-4, atol=1e-4)


def test_predict_through_faiss_matches_exact_and_names_the_items(trained_bpr):
    model, data = trained_bpr
    exact = [r for batch in quiet_trainer().predict(model, data) for r in batch]
    assert {"item_name", "item_text"} <= exact[0].keys()  # the catalogue beside each item, not a bare id
    titles = dict(zip(data.item_ids, data.item_names))
    assert all(r["item_name"] == titles[r["item"]] and r["item_name"].endswith(r["item"][1:]) for r in exact)
    model.retrieval = "faiss"
    try:
        approx = [r for batch in quiet_trainer().predict(model, data) for r in batch]
    finally:
        model.retrieval = "exact"
    pairs = lambda rows: {(r["user"], r["item"]) for r in rows}  # noqa: E731
    assert len(pairs(approx) & pairs(exact)) >= 0.95 * len(exact)


def test_faiss_retrieval_is_refused_for_a_model_not_scored_by_inner_products():
    from zoo.tasks.recsys.retrieval import RetrievalError

    model = NeuMF(embedding_dim=4, mlp_layers=(4,), num_users=3, num_items=5, retrieval="faiss")
    with pytest.raises(RetrievalError, match="NeuMF scores otherwise, use retrieval: exact"):
        model.retrieval_vectors(torch.tensor([0]))
    with pytest.raises(RetrievalError, match="model.init_args.retrieval must be one of exact, faiss; got 'ann'"):
        BPR(retrieval="ann")


# -- most_popular ranks before training; the item text a model will read is shown at set-up -----------------
@pytest.mark.slow
def test_most_popular_ranks_by_training_count_before_any_training():
    from zoo.tasks.recsys import MostPopular
    from zoo.tasks.recsys.base import synthetic_data

    data = synthetic_data(None)
    model = MostPopular()
    model.bind_data(data)
    scores = model.full_sort_scores(torch.tensor([0, 1]))
    counts = data.item_train_counts.float()
    assert torch.equal(scores[0].argsort(stable=True), counts.argsort(stable=True))
    result = quiet_trainer().test(model, data, verbose=False)[0]
    bpr = BPR(embedding_dim=16, lr=0.05)
    torch.manual_seed(0)
    quiet_trainer(max_epochs=8, num_sanity_val_steps=0, limit_val_batches=0).fit(bpr, data)
    lift = quiet_trainer().test(bpr, data, verbose=False)[0]["test/ndcg@10"] - result["test/ndcg@10"]
    assert 0 < result["test/ndcg@10"] and lift > 0  # the clustered log rewards personalisation
    model.bind_data(data)  # binding again keeps the scores it has (a trained checkpoint is not reset)
    assert bool(model.from_counts)


def test_item_text_columns_examples_and_empty_texts_are_reported(tmp_path, monkeypatch, caplog):
    import logging

    import zoo.data.recsys.datamodule as dm_module

    (tmp_path / "log.csv").write_text("user_id,item_id\n" + "".join(f"u{u},i{i}\n" for u in range(3) for i in range(4)))
    (tmp_path / "items.csv").write_text("item_id,title,genres\ni0,Alpha,a|b\ni1,,\ni2,Gamma,\ni3,,\n")
    said: list[str] = []
    monkeypatch.setattr("lightning.pytorch.utilities.rank_zero_info", said.append)
    with caplog.at_level(logging.WARNING, logger="zoo.data.recsys"):
        dm_module.InteractionDataModule(path=str(tmp_path / "log.csv"),
                                        items_path=str(tmp_path / "items.csv")).prepare()
    assert said[0].startswith("zoo: ") and "item text from column(s) title, genres, e.g." in said[0]
    assert "'i0': 'title: Alpha. genres: a, b.'" in said[0]
    # zoo's one-line warning, not a Python UserWarning with a source line a user cannot act on
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == (f"zoo: {tmp_path / 'items.csv'}: 2 of 4 item(s) have an empty text (all of title, genres "
                       "blank), e.g. ['i1', 'i3']; text-aware models see only their ID")
