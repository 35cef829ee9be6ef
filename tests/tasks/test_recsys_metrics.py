"""Ranking metrics against values computed by hand for known rankings."""

import math

import pytest
import torch

from zoo.metrics.ranking import (
    RankingAccumulator,
    full_ranking_metrics,
    sample_negatives,
    sampled_ranking_metrics,
)

L3, L5 = 1 / math.log2(3), 1 / math.log2(5)


def _case():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],     # ranking 0,1,2,3,4,5; relevant 1 and 3
                           [1.0, 0.1, 0.2, 0.9, 0.3, 0.0],     # item 0 seen (excluded); relevant 3 comes first
                           [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])    # nothing relevant: not evaluated
    targets = torch.zeros(3, 6, dtype=torch.bool)
    targets[0, [1, 3]] = True
    targets[1, 3] = True
    exclude = torch.zeros(3, 6, dtype=torch.bool)
    exclude[1, 0] = True
    return scores, targets, exclude


def test_full_ranking_matches_hand_computed_values():
    scores, targets, exclude = _case()
    m = full_ranking_metrics(scores, targets, ks=(1, 3, 5), exclude=exclude)
    expected_user0 = {"hit@1": 0, "recall@1": 0, "precision@1": 0, "ndcg@1": 0, "mrr@1": 0,
                      "hit@3": 1, "recall@3": 0.5, "precision@3": 1 / 3, "ndcg@3": L3 / (1 + L3), "mrr@3": 0.5,
                      "hit@5": 1, "recall@5": 1.0, "precision@5": 0.4, "ndcg@5": (L3 + L5) / (1 + L3), "mrr@5": 0.5}
    for key, value in expected_user0.items():
        assert m[key][0].item() == pytest.approx(value, abs=1e-6), key
    for key in ("hit@1", "recall@1", "precision@1", "ndcg@1", "mrr@1", "ndcg@5", "mrr@5"):
        assert m[key][1].item() == pytest.approx(1.0), key  # excluded item 0 would otherwise rank first
    assert m["precision@5"][1].item() == pytest.approx(0.2)
    assert all(math.isnan(v[2].item()) for v in m.values())


def test_without_the_mask_a_seen_item_takes_the_top():
    scores, targets, _ = _case()
    m = full_ranking_metrics(scores, targets, ks=(1,))
    assert m["hit@1"][1].item() == 0.0


def test_accumulator_averages_over_users_with_targets():
    scores, targets, exclude = _case()
    acc = RankingAccumulator()
    acc.update(full_ranking_metrics(scores[:2], targets[:2], ks=(3,), exclude=exclude[:2]))
    acc.update(full_ranking_metrics(scores[2:], targets[2:], ks=(3,), exclude=exclude[2:]))
    out = acc.compute()
    assert out["recall@3"] == pytest.approx((0.5 + 1.0) / 2)
    assert acc.count("recall@3") == 2


def test_excluded_items_never_count_when_fewer_items_than_k_are_left():
    scores = torch.tensor([[0.5, 0.4, 0.3]])
    targets = torch.tensor([[True, False, False]])
    exclude = torch.tensor([[True, False, False]])
    m = full_ranking_metrics(scores, targets, ks=(3,), exclude=exclude)
    assert m["hit@3"].item() == 0.0


def test_sampled_protocol_is_labelled_and_ranks_against_negatives():
    scores = torch.tensor([[5.0] + [float(i) / 10 for i in range(20)], [-1.0] + [float(i) for i in range(20)]])
    targets = torch.zeros_like(scores, dtype=torch.bool)
    targets[:, 0] = True
    m = sampled_ranking_metrics(scores, targets, num_negatives=10, ks=(10,), generator=torch.Generator().manual_seed(0))
    assert set(m) == {"sampled10_hit@10", "sampled10_ndcg@10", "sampled10_mrr@10"}
    assert m["sampled10_hit@10"].tolist() == [1.0, 0.0]  # rank 1, then rank 11 (every negative scores higher)
    assert m["sampled10_ndcg@10"][0].item() == pytest.approx(1.0)


def test_negative_sampling_avoids_excluded_items():
    exclude = torch.zeros(4, 50, dtype=torch.bool)
    exclude[:, :45] = True
    negs = sample_negatives(exclude, 30, torch.Generator().manual_seed(0))
    assert bool((negs >= 45).all())


def test_bad_shapes_and_cutoffs_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        full_ranking_metrics(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="positive"):
        full_ranking_metrics(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool), ks=(0,))
