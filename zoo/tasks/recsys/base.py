"""``RecommenderTask``: what every recommender shares.

* Data-dependent sizes (``num_users``, ``num_items``) come from the datamodule in ``configure_from_data`` and are
  written into the hyper-parameters, so ``load_from_checkpoint`` rebuilds the same network; the id maps
  (index -> original id) travel in the checkpoint under ``checkpoint["zoo_recsys"]``.
* Validation / test rank ALL items for each evaluated user (``full_sort_scores``), with the items the user has
  already seen masked (training items at validation; training + validation items at test), and log HR / Recall /
  Precision / NDCG / MRR at ``ks`` (``val/ndcg@10`` is the headline). ``sampled_negatives > 0`` adds the
  sampled-negatives protocol under ``sampled<n>_`` names.
* Test also reports cold items: metrics restricted to held-out items with <= ``cold_threshold`` (and 0) training
  interactions, written by ``write_test_report``.
* ``predict_step`` returns ``{user, rank, item, score}`` rows in original ids, never an item the user has seen
  (plus the user's position in the batch under ``zoo.contract.SAMPLE_KEY``, which the prediction writer uses to
  put DDP shards back in dataset order and does not write).
* The model never holds its datamodule: when bound (``configure_from_data``) it reads sizes, id maps, item
  popularity (and what a subclass needs) and states its :class:`~zoo.data.recsys.BatchSpec`; evaluation and
  predict batches carry the users' exclusion / target masks and histories (:mod:`zoo.data.recsys.batches`), so a
  checkpoint can be evaluated on any loader that yields such batches.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from zoo.contract import SAMPLE_KEY
from zoo.data.recsys import BatchSpec, InteractionDataModule
from zoo.metrics.ranking import RankingAccumulator, metrics_from_top, sampled_ranking_metrics, top_k
from zoo.tasks.base import Optimizer, Scheduler, ZooTask
from zoo.tasks.recsys.errors import RecsysModelError
from zoo.tasks.recsys.tables import IdTables

#: ``sparse_embeddings: auto`` turns row-wise updates on from this many ID-table rows (users + items). Measured
#: with BPR dim 64, batch 4096 on 2 CPU cores (docs/recsys.md, "Measured at scale"): row-wise was 1.7x slower per
#: epoch on ml-100k (2,600 rows), 5 % slower at 30,000 rows, 17 % faster at 120,000 and 3.5x faster at 480,000.
SPARSE_MIN_ROWS = 64_000
EMBEDDING_BACKENDS = ("auto", "torch", "fbgemm", "torchrec")
EMBEDDING_OPTIMIZERS = ("auto", "sgd", "adagrad", "rowwise_adagrad", "adam")


class RecommenderTask(IdTables, ZooTask):
    """Base of every recommender. Each model takes its own arguments and passes the rest (``**kwargs``) here, so
    these are the arguments of every model (and of its CLI / YAML schema):

    Args:
        num_users / num_items: sizes; None = read from the data when bound (a checkpoint records them).
        ks: cut-offs of the ranking metrics (10 is always added: ``val/ndcg@10`` is the headline).
        top_k: recommendations per user in ``predict``.
        retrieval: how ``predict`` finds the top-K: ``exact`` (score every item) or ``faiss`` (an HNSW index over
            the item vectors, :mod:`zoo.tasks.recsys.retrieval`; models scored by an inner product only).
        sampled_negatives: > 0 also logs the sampled-negatives protocol with that many negatives.
        cold_threshold: held-out items with at most this many training interactions count as cold (test report).
        sparse_embeddings: train the ID tables a model lists in ``sparse_tables`` with row-wise sparse updates
            (:mod:`zoo.tasks.recsys.optim`): a step costs what its batch touches, not the size of the tables.
            ``auto`` (default): row-wise when those tables hold at least ``SPARSE_MIN_ROWS`` rows together, dense
            below (small tables are cheaper to update whole). Off (dense) when ``weight_decay > 0`` (the sparse
            optimizers have none) and under FSDP / DeepSpeed.
        embedding_backend: how those ID tables are looked up and updated in training: ``torch`` (lookups, then
            the optimizer above: dense or row-wise), ``fbgemm`` (fbgemm's table-batched embeddings, the table
            update fused into the backward, :mod:`zoo.tasks.recsys.fused`; one process), ``auto`` (default):
            ``fbgemm`` on one CUDA device when fbgemm is installed and implements ``embedding_optimizer`` there,
            else ``torch`` (on CPU fbgemm's kernels measured no faster); ``torchrec`` (and ``auto`` under the
            strategy of ``recipes/overlays/strategy/torchrec.yaml``): the tables sharded over the processes by
            TorchRec, :mod:`zoo.tasks.recsys.sharded`. Checkpoints hold the plain tables whatever the backend,
            so they load, test, export and serve without fbgemm.
        embedding_optimizer: the tables' update: ``auto`` (default: follows ``optimizer``: lazy Adam for Adam /
            AdamW, SGD with Nesterov momentum for SGD; the torch backend only, as fbgemm's CPU build has no Adam),
            or one both backends compute alike, row-wise: ``sgd`` (no momentum), ``adagrad``,
            ``rowwise_adagrad`` (one accumulator per row), ``adam`` (fused only on CUDA).
        lr / weight_decay / optimizer / scheduler / warmup_ratio: as :class:`~zoo.tasks.base.ZooTask`
            (recommenders default to Adam, RecBole's choice).
    """

    #: how zoo export / zoo serve read and answer it (zoo.inference.family)
    export_family = "recommendation"
    #: ``precision: auto`` keeps recommenders in fp32 (zoo.scale.resolve_precision)
    fp32_reason = ("recommenders: torch has no bf16 CPU kernel for LightGCN's sparse graph product, and embedding "
                   "lookups gain nothing from autocast")

    monitor = "val/ndcg@10"
    monitor_mode = "max"

    def __init__(self, *, num_users: int | None = None, num_items: int | None = None,
                 ks: tuple[int, ...] = (5, 10, 20), top_k: int = 10, retrieval: str = "exact",
                 sampled_negatives: int = 0,
                 cold_threshold: int = 5, sparse_embeddings: bool | Literal["auto"] = "auto",
                 embedding_backend: Literal["auto", "torch", "fbgemm", "torchrec"] = "auto",
                 embedding_optimizer: Literal["auto", "sgd", "adagrad", "rowwise_adagrad", "adam"] = "auto",
                 lr: float = 1e-3,
                 weight_decay: float = 0.0, optimizer: Optimizer = "adam",
                 scheduler: Scheduler = "none", warmup_ratio: float = 0.0) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler,
                         warmup_ratio=warmup_ratio)
        # here rather than in each model: Lightning collects the arguments of every __init__ on the way down from
        # this call, so the hyper-parameters hold the model's own arguments and these (given or default)
        self.save_hyperparameters()
        if not ks or min(ks) < 1 or top_k < 1:
            raise RecsysModelError("--model.init_args.ks and --model.init_args.top_k must be positive; got "
                                   f"ks={ks}, top_k={top_k}")
        if 10 not in ks:
            ks = tuple(sorted(set(ks) | {10}))  # the headline metric is @10
        self.num_users, self.num_items = num_users, num_items
        self.ks, self.top_k = tuple(ks), top_k
        self.sampled_negatives, self.cold_threshold = sampled_negatives, cold_threshold
        if sparse_embeddings not in (True, False, "auto"):
            raise RecsysModelError("--model.init_args.sparse_embeddings must be true, false or auto; got "
                                   f"{sparse_embeddings!r}")
        self.sparse_embeddings = sparse_embeddings
        if embedding_backend not in EMBEDDING_BACKENDS:
            raise RecsysModelError(f"--model.init_args.embedding_backend must be one of "
                                   f"{', '.join(EMBEDDING_BACKENDS)}; "
                                   f"got {embedding_backend!r}")
        if embedding_optimizer not in EMBEDDING_OPTIMIZERS:
            raise RecsysModelError(f"--model.init_args.embedding_optimizer must be one of "
                                   f"{', '.join(EMBEDDING_OPTIMIZERS)}; "
                                   f"got {embedding_optimizer!r}")
        self.embedding_backend, self.embedding_optimizer = embedding_backend, embedding_optimizer
        self._fused: Any = None  # FusedTables (fbgemm) or sharded.ShardedTables (torchrec) while training
        from zoo.tasks.recsys.retrieval import RETRIEVALS, RetrievalError

        if retrieval not in RETRIEVALS:
            raise RetrievalError(f"--model.init_args.retrieval must be one of {', '.join(RETRIEVALS)}; got "
                                 f"{retrieval!r}")
        self.retrieval = retrieval
        self._faiss_index: Any = None
        self._catalogue: dict[str, list[str]] = {}
        self.user_ids: list[str] | None = None
        self.item_ids: list[str] | None = None
        self._acc: dict[str, RankingAccumulator] = {}
        self._last_test: dict[str, float] = {}
        self.register_buffer("item_popularity", torch.zeros(0), persistent=False)

    def has_sizes(self) -> bool:
        """Whether the sizes are known, so the network can be built without data (constructor or checkpoint)."""
        return self.num_users is not None and self.num_items is not None

    # -- row-wise updates of ID tables (zoo.tasks.recsys.optim) ---------------------------------------
    def sparse_tables(self) -> list[nn.Embedding]:
        """The ID tables that training reads only through lookups of the batch's rows (so their gradient is
        sparse); a model whose training touches a whole table (LightGCN's propagation) lists none."""
        return []

    def build(self) -> None:
        super().build()
        # decided when the network is built, not in configure_optimizers: DDP records which parameters have
        # sparse gradients when it wraps the module, before the optimizers exist
        tables = self.sparse_tables()
        rows = sum(t.num_embeddings for t in tables)
        wanted = self.sparse_embeddings is True or (self.sparse_embeddings == "auto" and rows >= SPARSE_MIN_ROWS)
        # a named table optimizer is a row-wise one (as fbgemm's), so the torch backend then updates row-wise too
        use = (wanted or self.embedding_optimizer != "auto") and self.weight_decay == 0
        for table in tables:
            table.sparse = use

    # -- data -> model ------------------------------------------------------------------------------
    def configure_from_data(self, datamodule: Any) -> None:
        if not isinstance(datamodule, InteractionDataModule):
            if not self._built:
                raise RecsysModelError(f"{type(self).__name__} needs an InteractionDataModule "
                                       "(or num_users / num_items)")
            return
        datamodule.prepare()
        if self._built and (self.num_users, self.num_items) != (datamodule.num_users, datamodule.num_items):
            raise RecsysModelError(f"the model was built for {self.num_users} users x {self.num_items} items, the data "
                                   f"has {datamodule.num_users} x {datamodule.num_items}; "
                                   "use the data it was trained on")
        self._check_id_maps(datamodule.user_ids, datamodule.item_ids, "the datamodule")
        self.user_ids, self.item_ids = list(datamodule.user_ids), list(datamodule.item_ids)
        self.num_users, self.num_items = datamodule.num_users, datamodule.num_items
        self.hparams["num_users"], self.hparams["num_items"] = self.num_users, self.num_items
        self.item_popularity = datamodule.item_train_counts.float().to(self.device)
        # the catalogue's names and texts, shown beside each recommendation in predict (not kept in checkpoints:
        # predict binds the model to its data, which has them)
        self._catalogue = {k: v for k, v in (("item_name", datamodule.item_names), ("item_text", datamodule.item_texts))
                           if v is not None and any(v[1:])}
        self.prepare_data_dependent(datamodule)
        self.build()  # after_build fills the network from the data (graphs, features), so it must exist
        self.after_build(datamodule)
        datamodule.use_batch_spec(self.train_batch_spec())

    def prepare_data_dependent(self, datamodule: InteractionDataModule) -> None:
        """Hook: read what the network needs from the data before it is built (text features, ...)."""

    def after_build(self, datamodule: InteractionDataModule) -> None:
        """Hook: read what the built network needs from the data (graphs, ...)."""

    def _check_id_maps(self, user_ids: list[str], item_ids: list[str], where: str) -> None:
        if self.user_ids is not None and (self.user_ids != list(user_ids) or self.item_ids != list(item_ids)):
            raise RecsysModelError(f"the id maps in the checkpoint differ from those of {where}: the model was "
                                   "trained on other interactions (or other filtering / k-core options)")

    def train_batch_spec(self) -> BatchSpec:
        """What the datamodule's train loader yields for this model (stated once, in ``configure_from_data``)."""
        return BatchSpec()

    # -- scoring ------------------------------------------------------------------------------------
    def full_sort_scores(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        """``[B, num_items + 1]`` scores of every item (column 0 is padding) for the given user indices."""
        raise NotImplementedError

    def retrieval_vectors(self, users: Tensor, history: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(user vectors [B, d], item vectors [num_items + 1, d])`` whose inner products are the scores, for
        an approximate nearest-neighbour index; models scored otherwise (NeuMF's MLP) do not implement it."""
        from zoo.tasks.recsys.retrieval import RetrievalError

        raise RetrievalError(f"--model.init_args.retrieval faiss needs scores that are inner products of user and item "
                             f"vectors; {type(self).__name__} scores otherwise, use retrieval: exact")

    def _top_known(self, users: Tensor, history: Tensor | None, exclude: Tensor, k: int) -> tuple[Tensor, Tensor]:
        if self.retrieval == "faiss":
            from zoo.tasks.recsys.retrieval import index_for

            vectors, _ = self.retrieval_vectors(users, history)
            self._faiss_index = index_for(self, self._faiss_index)
            return self._faiss_index[1].search(vectors, k, exclude)
        scores = self.full_sort_scores(users, history)
        return scores.float().masked_fill(exclude, float("-inf")).topk(k, dim=1)

    def _masks(self, batch: dict[str, Any], *keys: str) -> list[Tensor]:
        """The [B, num_items + 1] masks an evaluation / predict batch must carry (zoo.data.recsys.batches)."""
        width = self.num_items + 1
        for key in keys:
            mask = batch.get(key)
            if not isinstance(mask, Tensor) or mask.ndim != 2 or mask.shape[1] != width:
                raise RecsysModelError(f"{type(self).__name__}: evaluation and predict batches carry '{key}', a "
                                       f"[batch, {width}] bool mask (InteractionDataModule's loaders yield it); got "
                                       f"{tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__}")
        return [batch[key] for key in keys]

    # -- evaluation ---------------------------------------------------------------------------------
    def _eval_step(self, stage: str, batch: Any) -> Any:
        users = batch["user"]
        exclude, targets = self._masks(batch, "exclude", "targets")
        scores = self.full_sort_scores(users, batch.get("history"))
        acc = self._acc.setdefault(stage, RankingAccumulator())
        top, valid = top_k(scores, max(self.ks), exclude)  # one topk shared by every metric and subset
        acc.update(metrics_from_top(top, valid, targets, self.ks))
        if self.sampled_negatives > 0:
            g = torch.Generator(device=scores.device).manual_seed(1234 + int(users[0]))
            acc.update(sampled_ranking_metrics(scores, targets, self.sampled_negatives, self.ks, exclude, g))
        if stage == "test" and self.item_popularity.numel() == self.num_items + 1:  # unknown: not bound to data
            counts = self.item_popularity.to(scores.device)
            for name, cold in (("cold", counts <= self.cold_threshold), ("cold0", counts == 0)):
                acc.update(metrics_from_top(top, valid, targets & cold[None, :], self.ks), prefix=f"{name}_")
            # cold held-out items ranked among the cold items only: popular items no longer crowd them out, so
            # this tells whether a model orders rare items sensibly at all
            cold = counts <= self.cold_threshold
            ctop, cvalid = top_k(scores, max(self.ks), exclude | ~cold[None, :])
            acc.update(metrics_from_top(ctop, cvalid, targets & cold[None, :], self.ks), prefix="coldonly_")
        return None

    def on_validation_epoch_start(self) -> None:
        self._acc.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._acc.pop("test", None)

    def log_epoch_metrics(self, stage: str) -> None:
        acc = self._acc.pop(stage, None)
        if acc is None:
            return
        acc.sync()  # each DDP rank ranked its own shard of users
        values = acc.compute()
        for key, value in values.items():
            if key.startswith("cold"):
                continue  # in the test report; NaN when there are no cold items would upset loggers
            self.log(f"{stage}/{key}", value, prog_bar=key == "ndcg@10")
        if stage == "test":
            self._last_test = dict(values)
            self._last_test["evaluated_users"] = acc.count("ndcg@10")
            self._last_test["cold_users"] = acc.count("cold_ndcg@10")
            self._last_test["cold0_users"] = acc.count("cold0_ndcg@10")

    def write_test_report(self, out_dir: Any) -> list[Any]:
        if not self._last_test:
            return []
        from zoo.reporting.io import atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        t = self._last_test
        protocol = "full ranking, seen items masked"
        if self.sampled_negatives > 0:
            protocol += (f"; and sampled: each held-out item against {self.sampled_negatives} random unseen items "
                         f"(sampled{self.sampled_negatives}_* metrics, optimistic, not comparable with full ranking)")
        report = {"model": type(self).__name__, "protocol": protocol,
                  "cold_threshold": self.cold_threshold,
                  "all": {k: v for k, v in t.items() if "@" in k and not k.startswith("cold")},
                  f"cold_items_le_{self.cold_threshold}": {k.split("_", 1)[1]: v for k, v in t.items()
                                                           if k.startswith("cold_") and "@" in k},
                  "cold_items_0": {k.split("_", 1)[1]: v for k, v in t.items() if k.startswith("cold0_") and "@" in k},
                  f"cold_items_le_{self.cold_threshold}_ranked_among_cold_items":
                      {k.split("_", 1)[1]: v for k, v in t.items() if k.startswith("coldonly_") and "@" in k},
                  "evaluated_users": t.get("evaluated_users", 0), "cold_users": t.get("cold_users", 0),
                  "cold0_users": t.get("cold0_users", 0)}
        report = json.loads(json.dumps(report, default=float).replace("NaN", "null"))
        lines = [f"{report['model']} test report ({report['protocol']})", ""]
        for section, users in (("all", "evaluated_users"), (f"cold_items_le_{self.cold_threshold}", "cold_users"),
                               ("cold_items_0", "cold0_users"),
                               (f"cold_items_le_{self.cold_threshold}_ranked_among_cold_items", "cold_users")):
            lines.append(f"[{section}] users: {report[users]}")
            for k, v in sorted(report[section].items(), key=lambda kv: (kv[0].split("@")[0], int(kv[0].split("@")[1]))):
                lines.append(f"  {k:<16} {'n/a' if v is None else f'{v:.4f}'}")
            lines.append("")
        json_path, txt_path = out / "recsys_test_report.json", out / "recsys_test_report.txt"
        atomic_write_text(json_path, json.dumps(report, indent=2))
        atomic_write_text(txt_path, "\n".join(lines))
        return [json_path, txt_path]

    # -- prediction ---------------------------------------------------------------------------------
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        users, ids = batch["user"], batch.get("user_id")
        if self.item_ids is None:
            raise RecsysModelError("predict needs the id maps: train the model or load one of its checkpoints")
        (exclude,) = self._masks(batch, "exclude")
        history = batch.get("history")
        known = users >= 0
        k = min(self.top_k, self.num_items)
        rows: list[dict[str, Any]] = []
        top_items = torch.zeros(len(users), k, dtype=torch.long)
        top_scores = torch.zeros(len(users), k)
        if bool(known.any()):
            s, i = self._top_known(users[known], history[known] if history is not None else None, exclude[known], k)
            top_items[known.cpu()], top_scores[known.cpu()] = i.cpu(), s.cpu()
        if bool((~known).any()):
            if self.item_popularity.numel() != self.num_items + 1:
                raise RecsysModelError("recommending to unknown users needs the training item counts: bind the "
                                       "model to its InteractionDataModule (--data.init_args.unknown_users popular)")
            # documented fallback (data.unknown_users: popular): most popular training items, score = count
            s, i = self.item_popularity.cpu().index_fill(0, torch.tensor([0]), -1.0).topk(k)
            top_items[~known.cpu()], top_scores[~known.cpu()] = i, s
        for b in range(len(users)):
            uid = ids[b] if ids is not None else self.user_ids[int(users[b])]
            for r in range(k):
                score = float(top_scores[b, r])
                if not math.isfinite(score):
                    break  # the user has seen (almost) everything
                item = int(top_items[b, r])
                rows.append({"user": uid, "rank": r + 1, "item": self.item_ids[item], "score": round(score, 6),
                             **{col: values[item] for col, values in self._catalogue.items()}, SAMPLE_KEY: b})
        return rows

    # -- checkpoints --------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["zoo_recsys"] = {"user_ids": self.user_ids, "item_ids": self.item_ids}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        maps = checkpoint.get("zoo_recsys") or {}
        if maps.get("user_ids") is not None:
            self._check_id_maps(maps["user_ids"], maps["item_ids"], "the checkpoint")
            self.user_ids, self.item_ids = list(maps["user_ids"]), list(maps["item_ids"])


def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """-log sigmoid(pos - neg), averaged; ``neg`` may carry several negatives per positive."""
    if neg.ndim > pos.ndim:
        pos = pos.unsqueeze(-1)
    return -torch.nn.functional.logsigmoid(pos - neg).mean()


def synthetic_data(tmp_dir: Any = None, **kwargs: Any) -> InteractionDataModule:
    defaults = dict(dataset="synthetic_interactions", split="loo", batch_size=128, eval_batch_size=64, seed=0)
    defaults.update(kwargs)
    return InteractionDataModule(**defaults)
