"""Recommenders, one file per model; all share :class:`RecommenderTask`."""

from zoo.tasks.recsys.base import RecommenderTask, RecsysModelError
from zoo.tasks.recsys.bpr import BPR
from zoo.tasks.recsys.lightgcn import LightGCN
from zoo.tasks.recsys.neumf import NeuMF
from zoo.tasks.recsys.popular import MostPopular
from zoo.tasks.recsys.sasrec import SASRec
from zoo.tasks.recsys.text_aware import TextAwareRecommender
from zoo.tasks.recsys.two_tower import TwoTower

__all__ = ["BPR", "LightGCN", "MostPopular", "NeuMF", "RecommenderTask", "RecsysModelError", "SASRec",
           "TextAwareRecommender", "TwoTower"]
