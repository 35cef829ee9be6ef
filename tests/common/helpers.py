"""Helpers shared by tests."""


def quiet_trainer(**kwargs):
    import lightning.pytorch as pl

    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    defaults.update(kwargs)
    return pl.Trainer(**defaults)
