"""Recommenders beyond the generic registry test: no seen item recommended, checkpoints keep id maps and every
argument, evaluation from the batch alone, unknown users, the cold-start report, the text encoders, APR through
the embed contract, recipes parse."""

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from tests.common.helpers import quiet_trainer
from zoo.contract import ZooTechnique
from zoo.data.recsys import InteractionDataModule
from zoo.tasks.base import load_checkpoint
from zoo.tasks.recsys import BPR, RecsysModelError
from zoo.tasks.recsys.base import synthetic_data

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes" / "recsys").glob("*.yaml"))


def _known_items(dm: InteractionDataModule) -> dict[str, set[str]]:
    view = dm.eval_view("predict")
    owner, items = view.exclude.gather(torch.arange(dm.num_users))
    known: dict[str, set[str]] = {u: set() for u in dm.user_ids}
    for o, i in zip(owner.tolist(), items.tolist()):
        known[dm.user_ids[o]].add(dm.item_ids[i])
    return known


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """BPR trained briefly on the synthetic log, with a checkpoint on disk."""
    out = tmp_path_factory.mktemp("bpr")
    from lightning.pytorch.callbacks import ModelCheckpoint

    data = synthetic_data(dataset_kwargs={"per_user": 30})
    model = BPR(embedding_dim=16, lr=0.05, top_k=60)
    ckpt = ModelCheckpoint(dirpath=str(out), filename="m", monitor="val/ndcg@10", mode="max")
    trainer = quiet_trainer(max_epochs=4, enable_checkpointing=True, callbacks=[ckpt], num_sanity_val_steps=0)
    trainer.fit(model, data)
    return model, data, ckpt.best_model_path


def test_seen_items_are_never_recommended(trained):
    model, data, _ = trained
    rows = [r for batch in quiet_trainer().predict(model, data) for r in batch]
    known = _known_items(data)
    assert {r["user"] for r in rows} == set(data.user_ids)
    # 30 interactions per user of 80 items: top 60 would reach seen items if they were not masked
    assert all(r["item"] not in known[r["user"]] for r in rows)
    per_user = [r for r in rows if r["user"] == data.user_ids[0]]
    assert [r["rank"] for r in per_user] == list(range(1, 51))  # 80 - 30 seen = 50 left
    assert [r["score"] for r in per_user] == sorted((r["score"] for r in per_user), reverse=True)


def test_checkpoint_keeps_id_maps_and_reloads(trained, tmp_path):
    model, data, path = trained
    ck = torch.load(path, weights_only=True)
    assert ck["zoo_recsys"]["item_ids"][1:] == data.item_ids[1:]
    loaded = load_checkpoint(path)
    assert isinstance(loaded, BPR) and loaded.item_ids == data.item_ids
    rows = quiet_trainer().predict(loaded, synthetic_data(dataset_kwargs={"per_user": 30}))
    assert rows[0][0]["user"] == data.user_ids[0]
    other = synthetic_data(dataset_kwargs={"per_user": 30, "num_users": 40})
    with pytest.raises(RecsysModelError, match="built for 50 users x 80 items, the data has 40 x 80"):
        quiet_trainer().predict(load_checkpoint(path), other)
    renamed = load_checkpoint(path)
    renamed.user_ids = [u + "x" for u in renamed.user_ids]
    with pytest.raises(RecsysModelError, match="id maps in the checkpoint differ"):
        quiet_trainer().predict(renamed, synthetic_data(dataset_kwargs={"per_user": 30}))


def test_checkpoint_records_every_argument_and_rebuilds(trained):
    _, data, path = trained
    hp = torch.load(path, weights_only=True)["hyper_parameters"]
    assert {"embedding_dim", "reg_weight", "num_negatives", "num_users", "num_items", "ks", "top_k",
            "sampled_negatives", "cold_threshold", "lr", "weight_decay", "optimizer", "scheduler",
            "warmup_ratio"} <= set(hp)
    assert (hp["embedding_dim"], hp["lr"], hp["top_k"], hp["optimizer"]) == (16, 0.05, 60, "adam")
    assert (hp["num_users"], hp["num_items"]) == (data.num_users, data.num_items)
    loaded = BPR.load_from_checkpoint(path)
    assert loaded.user_emb.num_embeddings == data.num_users and loaded.item_emb.num_embeddings == data.num_items + 1
    assert loaded.top_k == 60 and loaded.lr == 0.05 and loaded.ks == (5, 10, 20)


def _full_sort_batches(data, stage_known, stage_held, batch_size):
    """Evaluation batches made by hand from the split (what RecBole's full-sort loader yields)."""
    n = data.num_items + 1
    exclude = torch.zeros(data.num_users, n, dtype=torch.bool)
    for stage in stage_known:
        u, i, _ = data.parts[stage]
        exclude[torch.from_numpy(u), torch.from_numpy(i)] = True
    exclude[:, 0] = True
    targets = torch.zeros(data.num_users, n, dtype=torch.bool)
    targets[torch.from_numpy(data.parts[stage_held][0]), torch.from_numpy(data.parts[stage_held][1])] = True
    users = torch.nonzero(targets.any(1)).flatten()
    return [{"user": u, "exclude": exclude[u], "targets": targets[u]} for u in users.split(batch_size)]


def test_a_checkpoint_evaluates_on_any_loader_of_full_sort_batches(trained):
    """The model reads what it scores with from the batch only: a plain DataLoader of hand-made batches (no
    InteractionDataModule) gives the same metrics as the datamodule."""
    _, data, path = trained
    expected = quiet_trainer().validate(load_checkpoint(path), data, verbose=False)[0]
    batches = _full_sort_batches(data, ("train",), "val", data.eval_batch_size)
    got = quiet_trainer().validate(load_checkpoint(path), DataLoader(batches, batch_size=None), verbose=False)[0]
    assert set(got) == set(expected) and "val/ndcg@10" in got
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-9)
    with pytest.raises(RecsysModelError, match="carry 'exclude', a \\[batch, 81\\] bool mask"):
        quiet_trainer().validate(load_checkpoint(path), DataLoader([{"user": batches[0]["user"]}], batch_size=None))


def test_unknown_user_popularity_fallback(trained):
    model, _, path = trained
    data = synthetic_data(dataset_kwargs={"per_user": 30}, predict_users=["ghost"], unknown_users="popular")
    rows = quiet_trainer().predict(load_checkpoint(path), data)[0]
    counts = data.item_train_counts
    assert [r["user"] for r in rows][:1] == ["ghost"]
    assert counts[data.item_ids.index(rows[0]["item"])] == counts[1:].max()


def test_test_report_has_cold_start_sections(trained, tmp_path):
    model, data, _ = trained
    quiet_trainer().test(model, data, verbose=False)
    paths = model.write_test_report(tmp_path)
    import json

    report = json.loads(Path(paths[0]).read_text())
    assert {"all", "cold_items_le_5", "cold_items_0"} <= set(report)
    assert 0.0 <= report["all"]["ndcg@10"] <= 1.0
    assert "cold_items_le_5" in Path(paths[1]).read_text()


class _PerturbUsers(ZooTechnique):
    """A minimal APR-like term: the task loss again with every embedding nudged along its gradient."""

    name = "adv"
    needs_embedding_grad = True

    def loss_terms(self, module, batch, emb, out, loss):
        grads = torch.autograd.grad(loss, list(emb.values()), retain_graph=True)
        adv = {k: v + 0.1 * g.sign() for (k, v), g in zip(emb.items(), grads)}
        return {"adv": module.task_loss(module.forward_embedded(adv, batch), batch)}


def test_embed_dict_supports_adversarial_terms():
    model = BPR(embedding_dim=8, lr=0.01)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0, callbacks=[_PerturbUsers()])
    trainer.fit(model, synthetic_data())
    assert "train/loss_adv" in trainer.callback_metrics


def test_text_features_are_cached_by_content(tmp_path):
    from zoo.tasks.recsys.text_features import encode_texts

    a = encode_texts(["red thing", "blue thing"], "hashing", tmp_path, dim=16)
    b = encode_texts(["red thing", "blue thing"], "hashing", tmp_path, dim=16)
    encode_texts(["red thing", "green thing"], "hashing", tmp_path, dim=16)
    assert torch.equal(a, b) and a.shape == (2, 16)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_text_features_from_a_local_hf_encoder(tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "blue", "thing", "title", ":", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path / "enc")
    BertModel(BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path / "enc")
    from zoo.tasks.recsys.text_features import encode_texts

    feats = encode_texts(["title: red thing.", "title: blue thing."], str(tmp_path / "enc"), tmp_path / "cache")
    assert feats.shape == (2, 8)
    assert torch.allclose(feats.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.slow
def test_text_aware_with_lora_trains_adapters_only_and_reloads(tmp_path):
    """``text_peft``: the item texts go through the adapted encoder at every step; the base encoder stays frozen;
    the checkpoint holds adapters (not the base) and the reloaded model scores exactly as the trained one."""
    from zoo.backbones.text import tiny_bert_dir
    from zoo.tasks.recsys import TextAwareRecommender

    enc = tiny_bert_dir(tmp_path / "bert")
    torch.manual_seed(0)
    model = TextAwareRecommender(embedding_dim=16, text_encoder=str(enc), text_peft={"method": "lora", "r": 4},
                                 max_length=16, lr=0.01)
    data = synthetic_data(tmp_path)
    model.configure_from_data(data)
    assert model.text_dim == 32 and int(model.item_attention_mask[1:].sum(1).min()) > 2  # real tokens per item
    named = dict(model.named_parameters())
    lora = {n for n in named if "lora_" in n}
    base = {n for n in named if n.startswith("item_encoder.") and n not in lora}
    assert lora and base and all(not named[n].requires_grad for n in base)
    before = {n: p.detach().clone() for n, p in named.items()}
    trainer = quiet_trainer(max_steps=3, limit_val_batches=1, num_sanity_val_steps=0, enable_checkpointing=False)
    trainer.fit(model, data)
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in lora if "lora_B" in n)  # B starts at 0, so moved
    assert all(torch.equal(before[n], after[n]) for n in base)
    path = tmp_path / "lora.ckpt"
    trainer.save_checkpoint(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert not base & set(saved) and lora <= set(saved)
    model.eval()
    users = torch.arange(model.num_users)
    expected = model.full_sort_scores(users)
    reloaded = TextAwareRecommender.load_from_checkpoint(path).eval()
    assert torch.allclose(reloaded.full_sort_scores(users), expected, atol=1e-5)


def test_text_aware_needs_item_text(tmp_path):
    from zoo.tasks.recsys import TextAwareRecommender

    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id\nu,a\nu,b\nu,c\nv,a\nv,b\nv,c\n")
    model = TextAwareRecommender(text_encoder="hashing", cache_dir=str(tmp_path))
    with pytest.raises(RecsysModelError, match="items_path"):
        model.configure_from_data(InteractionDataModule(path=str(inter), split="loo"))


def test_recipe_cli_types_the_optimizer_and_forwards_model_flags():
    """Each model passes the shared arguments on as ``**kwargs``: the CLI still knows (and checks) them."""
    from zoo.cli import ZooCLI

    recipe = next(p for p in RECIPES if p.stem == "bpr_ml100k")
    cli = ZooCLI(args=["--config", str(recipe), "--model.optimizer", "adamw", "--model.lr", "0.01"], run=False)
    assert (cli.model.optimizer_name, cli.model.lr, cli.model.hparams["optimizer"]) == ("adamw", 0.01, "adamw")
    with pytest.raises(SystemExit):
        ZooCLI(args=["--config", str(recipe), "--model.optimizer", "adamx"], run=False)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipes_parse(recipe):
    from zoo.cli import ZooCLI

    cli = ZooCLI(args=["--config", str(recipe)], run=False)
    assert getattr(cli.model, "monitor", None) == "val/ndcg@10"
    assert isinstance(cli.datamodule, InteractionDataModule)


def test_every_model_has_a_recipe():
    from zoo.registry import MODELS

    names = {p.stem.rsplit("_ml100k", 1)[0] for p in RECIPES}
    assert set(MODELS.list(tag="recsys")) <= names


def test_lightgcn_adjacency_is_symmetrically_normalised():
    import numpy as np

    from zoo.tasks.recsys.lightgcn import normalized_adjacency

    adj = normalized_adjacency(np.array([0, 0, 1]), np.array([1, 2, 2]), num_users=2, num_items=3).to_dense()
    # nodes: users 0,1 then items 0..3; user 0 has degree 2, item 1 degree 1, item 2 degree 2
    assert adj[0, 2 + 1].item() == pytest.approx(1 / 2 ** 0.5)
    assert adj[0, 2 + 2].item() == pytest.approx(0.5)
    assert torch.equal(adj, adj.T)


def test_two_tower_log_q_lowers_popular_items_logits():
    from zoo.tasks.recsys import TwoTower

    model = TwoTower(embedding_dim=4, tower_layers=(), num_users=3, num_items=3)
    batch = {"user": torch.tensor([0, 1]), "pos": torch.tensor([1, 2])}
    emb = model.embed(batch)
    plain = model.forward_embedded(emb, batch)
    model.item_popularity = torch.tensor([0.0, 9.0, 1.0, 0.0])
    corrected = model.forward_embedded(emb, batch)
    # item 1 has q = 0.9, item 2 q = 0.1: the correction adds -log q per column
    assert torch.allclose(corrected - plain, -torch.log(torch.tensor([0.9, 0.1]))[None, :].expand(2, 2))
