"""Metrics torchmetrics lacks: batched full-ranking top-K recommendation metrics."""

from zoo.metrics.ranking import RankingAccumulator, full_ranking_metrics, sampled_ranking_metrics

__all__ = ["RankingAccumulator", "full_ranking_metrics", "sampled_ranking_metrics"]
