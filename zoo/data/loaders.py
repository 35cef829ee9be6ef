"""The train / val / test loader trio that every split-based datamodule writes the same way."""

from __future__ import annotations

from torch.utils.data import DataLoader


class SplitLoaders:
    """Lightning's ``train_dataloader`` / ``val_dataloader`` / ``test_dataloader`` from one method,
    ``split_loader(split, train)``: training shuffles, evaluation keeps order (an unpadded shard under DDP)."""

    def split_loader(self, split: str, train: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self.split_loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.split_loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self.split_loader("test", train=False)


__all__ = ["SplitLoaders"]
