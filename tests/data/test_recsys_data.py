"""InteractionDataModule: formats, filtering, splits, negative sampling and bad inputs."""

import numpy as np
import pandas as pd
import pytest
import torch

from zoo.data.recsys import (
    BatchSpec,
    InteractionDataModule,
    PairBatches,
    RecsysDataError,
    UnknownUserError,
    k_core,
    ratio_split_counts,
    synthetic_log,
)


def _write_log(path, rows, header="user_id,item_id,rating,timestamp"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


def test_ratio_split_counts_follow_recbole_rounding():
    counts = ratio_split_counts(np.array([10, 5, 2, 1, 23]), (0.8, 0.1, 0.1))
    assert counts.tolist() == [[8, 1, 1], [3, 1, 1], [1, 0, 1], [1, 0, 0], [19, 2, 2]]


def test_formats_udata_atomic_and_movielens_csv(tmp_path):
    (tmp_path / "u.data").write_text("1\t10\t4\t100\n1\t11\t5\t101\n2\t10\t3\t102\n")
    dm = InteractionDataModule(path=str(tmp_path / "u.data"), split="loo")
    assert dm.describe()["num_users"] == 2 and dm.num_items == 2
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                      "A\tp\t1\t5\nA\tq\t2\t6\n")
    (tmp_path / "x.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
                                     "p\tAlpha\tDrama\nq\tBeta\tComedy\n")
    dm = InteractionDataModule(path=str(tmp_path / "x.inter"), items_path=str(tmp_path / "x.item"), split="loo")
    dm.prepare()
    assert dm.item_texts[1:] == ["title: Alpha. genres: Drama.", "title: Beta. genres: Comedy."]
    _write_log(tmp_path / "ratings.csv", ["1,7,4.5,10", "2,7,3.0,11"], "userId,movieId,rating,timestamp")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n7,"Heat (1995)",Action|Crime\n')
    dm = InteractionDataModule(path=str(tmp_path / "ratings.csv"), items_path=str(tmp_path / "movies.csv"))
    dm.prepare()
    assert dm.item_texts[1] == "title: Heat (1995). genres: Action, Crime."


def test_configurable_columns_parquet_threshold_and_kcore(tmp_path):
    inter, _ = synthetic_log(num_users=20, num_items=30, per_user=8)
    inter = inter.rename(columns={"user_id": "who", "item_id": "what", "rating": "stars", "timestamp": "when"})
    inter.to_parquet(tmp_path / "log.parquet")
    dm = InteractionDataModule(path=str(tmp_path / "log.parquet"), user_column="who", item_column="what",
                               rating_column="stars", time_column="when", implicit_threshold=3)
    dm.prepare()
    assert sum(dm.describe()[f"num_{s}"] for s in ("train", "val", "test")) == int((inter["stars"] >= 3).sum())
    df = pd.DataFrame({"user": ["a", "a", "a", "b", "c", "c"], "item": ["x", "y", "z", "x", "x", "y"]})
    kept = k_core(df, user_min=2, item_min=2)
    assert sorted(zip(kept.user, kept.item)) == [("a", "x"), ("a", "y"), ("c", "x"), ("c", "y")]


def test_splits_are_seeded_and_loo_holds_out_the_latest(tmp_path):
    a = InteractionDataModule(dataset="synthetic_interactions", split="random", seed=3)
    b = InteractionDataModule(dataset="synthetic_interactions", split="random", seed=3)
    c = InteractionDataModule(dataset="synthetic_interactions", split="random", seed=4)
    for dm in (a, b, c):
        dm.prepare()
    assert np.array_equal(a.parts["test"][1], b.parts["test"][1])
    assert not np.array_equal(a.parts["test"][1], c.parts["test"][1])
    path = _write_log(tmp_path / "log.csv", ["u,a,1,30", "u,b,1,10", "u,c,1,20", "u,d,1,40"])
    dm = InteractionDataModule(path=path, split="loo")
    dm.prepare()
    assert dm.item_ids[int(dm.parts["test"][1][0])] == "d" and dm.item_ids[int(dm.parts["val"][1][0])] == "a"
    dm = InteractionDataModule(path=path, split="temporal", split_ratios=(0.5, 0.25, 0.25))
    dm.prepare()
    assert [dm.item_ids[i] for i in dm.train_csr().items.tolist()] == ["b", "c"]  # chronological


def test_negatives_never_hit_the_users_training_items():
    dm = InteractionDataModule(dataset="synthetic_interactions", dataset_kwargs={"per_user": 40}, split="loo")
    users, items = dm.train_pairs()
    batches = PairBatches(users, items, dm.num_items, batch_size=10_000, num_negatives=3, seed=0)
    batch = next(iter(batches))
    seen = dm.train_csr().dense(torch.arange(dm.num_users), dm.num_items + 1)
    assert batch["neg"].shape == (len(users), 3)
    assert not bool(seen[batch["user"][:, None], batch["neg"]].any())
    assert bool((batch["neg"] >= 1).all())


def test_keyed_membership_test_draws_the_same_negatives_as_the_flat_one(monkeypatch):
    # large logs test "is this a training item" on sorted keys behind a hashed bitmap: the draws must be those of
    # the flat array, bit for bit, whatever the bitmap lets through
    dm = InteractionDataModule(dataset="synthetic_interactions", dataset_kwargs={"per_user": 40}, split="loo")
    users, items = dm.train_pairs()
    flat = PairBatches(users, items, dm.num_items, batch_size=10_000, num_negatives=3, seed=0)
    monkeypatch.setattr(PairBatches, "FLAT_MAX_CELLS", 0)
    keyed = PairBatches(users, items, dm.num_items, batch_size=10_000, num_negatives=3, seed=0)
    assert flat.seen_flat is not None and keyed.seen_flat is None
    drawn = [next(iter(b))["neg"] for b in (flat, keyed)]
    assert torch.equal(drawn[0], drawn[1])
    keys = users.astype(np.int64) * (dm.num_items + 1) + items
    assert keyed._seen(keys).all()  # every training pair is found, none lost to the bitmap
    other = keys + 1  # the next item of the same user, a training item only if the log has it
    assert (keyed._seen(other) == np.isin(other, keys)).all()


def test_duplicate_rows_are_refused_or_deduplicated(tmp_path):
    path = _write_log(tmp_path / "log.csv", ["u,a,1,1", "u,b,1,2", "u,a,3,3", "v,a,1,1"])
    with pytest.raises(RecsysDataError, match=r"user 'u' and item 'a' occur more than once.*rows \[1, 3\].*duplicates"):
        InteractionDataModule(path=path).prepare()
    dm = InteractionDataModule(path=path, duplicates="last", split="loo")
    dm.prepare()
    assert sum(len(p[0]) for p in dm.parts.values()) == 3


@pytest.mark.parametrize("value", ["", "NaN", "five"])
def test_nan_or_non_numeric_ratings_are_refused(tmp_path, value):
    path = _write_log(tmp_path / "log.csv", ["u,a,1,1", f"u,b,{value},2"])
    with pytest.raises(RecsysDataError, match=r"log.csv: data row 2 has rating .* expected a finite number"):
        InteractionDataModule(path=path).prepare()


def test_items_file_missing_ids_of_the_log(tmp_path):
    path = _write_log(tmp_path / "log.csv", ["u,a,1,1", "u,b,1,2"])
    (tmp_path / "items.csv").write_text("item_id,title\na,Alpha\n")
    with pytest.raises(RecsysDataError, match=r"items.csv: 1 item id\(s\) used in .*log.csv are missing, e.g. \['b'\]"):
        InteractionDataModule(path=path, items_path=str(tmp_path / "items.csv")).prepare()


def test_a_user_without_a_test_item(tmp_path):
    path = _write_log(tmp_path / "log.csv", ["u,a,1,1", "u,b,1,2", "u,c,1,3", "v,a,1,1"])
    with pytest.raises(RecsysDataError, match=r"leaves user 'v' with no val item.*user_core"):
        InteractionDataModule(path=path, split="loo", empty_split="error").prepare()
    dm = InteractionDataModule(path=path, split="loo")  # documented default: not evaluated on that split
    assert [dm.user_ids[u] for u in dm.eval_view("test").users.tolist()] == ["u"]


def test_unknown_users_in_predict(tmp_path):
    dm = InteractionDataModule(dataset="synthetic_interactions", predict_users=["u1", "nobody"])
    dm.use_batch_spec(BatchSpec())
    with pytest.raises(UnknownUserError, match=r"not in the training data, e.g. \['nobody'\].*"
                                                 r"--data\.init_args\.unknown_users popular"):
        dm.predict_dataloader()
    dm = InteractionDataModule(dataset="synthetic_interactions", predict_users=["u1", "nobody"],
                               unknown_users="popular")
    dm.use_batch_spec(BatchSpec(kind="sequence", max_len=3))
    batch = next(iter(dm.predict_dataloader()))
    assert batch["user"].tolist() == [dm.user_ids.index("u1"), -1] and batch["user_id"] == ["u1", "nobody"]
    # an unknown user has nothing seen and no history; padding is excluded for everyone
    assert batch["exclude"][1].tolist() == [True] + [False] * dm.num_items
    assert batch["history"][1].tolist() == [0, 0, 0] and bool(batch["history"][0].gt(0).all())


def test_loaders_wait_for_the_models_batch_spec():
    dm = InteractionDataModule(dataset="synthetic_interactions", split="loo")
    for loader in (dm.train_dataloader, dm.val_dataloader, dm.predict_dataloader):
        with pytest.raises(RecsysDataError, match=r"no batch spec yet.*bind_data.*use_batch_spec"):
            loader()
    dm.use_batch_spec(BatchSpec(kind="sequence", max_len=4))
    assert set(next(iter(dm.train_dataloader()))) == {"user", "seq", "target"}
    dm.use_batch_spec(BatchSpec(num_negatives=2))
    assert next(iter(dm.train_dataloader()))["neg"].shape[1] == 2


def test_evaluation_batches_carry_masks_and_histories():
    """Test batches: seen = train + val (+ padding), targets = test items, history = the last known items."""
    dm = InteractionDataModule(dataset="synthetic_interactions", split="loo", eval_batch_size=7)
    dm.use_batch_spec(BatchSpec(kind="sequence", max_len=4))
    batches = list(dm.test_dataloader())
    assert [len(b["user"]) for b in batches][:2] == [7, 7] and "history" in batches[0]
    users = torch.cat([b["user"] for b in batches])
    assert torch.equal(users, dm.eval_view("test").users)
    n = dm.num_items + 1
    seen = torch.zeros(dm.num_users, n, dtype=torch.bool)
    for stage in ("train", "val"):
        u, i, _ = dm.parts[stage]
        seen[torch.from_numpy(u), torch.from_numpy(i)] = True
    seen[:, 0] = True
    held = torch.zeros(dm.num_users, n, dtype=torch.bool)
    held[torch.from_numpy(dm.parts["test"][0]), torch.from_numpy(dm.parts["test"][1])] = True
    assert torch.equal(torch.cat([b["exclude"] for b in batches]), seen[users])
    assert torch.equal(torch.cat([b["targets"] for b in batches]), held[users])
    # leave-one-out: the newest known item at test time is the user's validation item
    val_item = dict(zip(dm.parts["val"][0].tolist(), dm.parts["val"][1].tolist()))
    last = torch.cat([b["history"] for b in batches])[:, -1]
    assert all(int(last[k]) == val_item[int(u)] for k, u in enumerate(users) if int(u) in val_item)
    assert list(dm.test_dataloader())[0]["exclude"] is batches[0]["exclude"]  # built once, then reused
    dm.use_batch_spec(BatchSpec())
    assert "history" not in next(iter(dm.test_dataloader()))


def test_bad_options_name_the_flag():
    with pytest.raises(RecsysDataError, match="data.init_args.split must be one of"):
        InteractionDataModule(dataset="synthetic_interactions", split="weird")
    with pytest.raises(RecsysDataError, match="exactly one of --data.init_args.path or --data.init_args.dataset"):
        InteractionDataModule()


def test_training_batches_are_split_across_ddp_ranks_without_overlap(monkeypatch):
    """Each rank keeps a strided share of the same global batch: together they see it exactly once."""
    import numpy as np
    import torch

    from zoo.data.recsys import PairBatches

    users = np.repeat(np.arange(10), 6)
    items = np.tile(np.arange(1, 7), 10)

    def batches(rank=None):
        with monkeypatch.context() as m:
            if rank is not None:
                m.setattr(torch.distributed, "is_initialized", lambda: True)
                m.setattr(torch.distributed, "get_rank", lambda: rank)
                m.setattr(torch.distributed, "get_world_size", lambda: 2)
            return list(PairBatches(users, items, num_items=20, batch_size=16, num_negatives=1, seed=3))

    whole, r0, r1 = batches(), batches(0), batches(1)
    assert len(whole) == len(r0) == len(r1) == 4
    for full, a, b in zip(whole, r0, r1):
        def pairs(batch):
            return sorted(zip(batch["user"].tolist(), batch["pos"].tolist(), batch["neg"].tolist()))

        assert pairs(full) == sorted(pairs(a) + pairs(b))
        assert abs(len(a["user"]) - len(b["user"])) <= 1
