"""What every text task shares: a Hugging Face encoder (optionally with PEFT adapters) and a linear head on it.

``embed`` returns the input token embeddings (the encoder's word-embedding lookup) and ``encode`` runs the encoder
on ``inputs_embeds`` (position and token-type embeddings are added inside), so embedding-space techniques (FGM,
PGD, FreeLB) perturb exactly what adversarial-training papers perturb.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from zoo.backbones.text import (
    adalora_orthogonality,
    build_encoder,
    encoder_vocab_size,
    is_peft,
    is_sentence_encoder,
    load_tokenizer,
    pool,
    resolve_encoder,
)
from zoo.inference.windows import pool_windows as pool_rows
from zoo.reporting.io import atomic_write_text
from zoo.tasks.adapters import AdapterCheckpoints
from zoo.tasks.classification import ClassDataMismatchError

CHUNK_POOLING = ("mean", "max")


def pool_windows(logits: Tensor, batch: dict[str, Any], how: str) -> Tensor:
    """One row of logits per document: the windows of a chunked document (``window_doc`` in the batch, from
    ``data.long_text: chunks``) pooled by ``mean`` or ``max``; a batch without windows is returned as is."""
    n_docs = len(batch["label"]) if "label" in batch else None
    return pool_rows(logits, batch.get("window_doc"), how, n_docs)


class EncoderMixin(AdapterCheckpoints):
    """The encoder and its head, the embed / encode pair, the data's tokenizer check, AdaLoRA's extra work,
    adapter-only checkpoints (through :class:`~zoo.tasks.adapters.AdapterCheckpoints`) and export.

    Mixed in before the ``ZooTask`` base; the task sets ``encoder_name``, ``peft_spec`` and ``dropout_p`` in its
    constructor and calls :meth:`build_encoder_and_head` from its build hook.
    """

    encoder: nn.Module
    head: nn.Sequential
    encoder_name: str
    peft_spec: dict[str, Any] | None
    dropout_p: float

    def build_encoder_and_head(self, num_outputs: int) -> None:
        self.encoder = build_encoder(self.encoder_name, self.peft_spec)
        self.hidden_size = int(self.encoder.config.hidden_size)
        self.head = nn.Sequential(nn.Dropout(self.dropout_p), nn.Linear(self.hidden_size, num_outputs))

    def uses_adapters(self) -> bool:
        return is_peft(self.encoder)

    def configure_from_data(self, datamodule: Any) -> None:
        super().configure_from_data(datamodule)  # type: ignore[misc]
        tok = getattr(datamodule, "tokenizer", None) if datamodule is not None else None
        if tok is None:
            return
        # token ids past the embedding table would fail deep inside the encoder on the first batch
        vocab = encoder_vocab_size(self.encoder_name)
        if len(tok) > vocab:
            raise ClassDataMismatchError(
                f"the data's tokenizer ({getattr(datamodule, 'tokenizer_name', '?')}) has {len(tok)} tokens but the "
                f"encoder {self.encoder_name} embeds only {vocab}; set --data.init_args.tokenizer to the model's "
                "encoder")

    # -- contract -------------------------------------------------------------------------------------
    def embed(self, batch: dict[str, Any]) -> Tensor:
        return self.encoder.get_input_embeddings()(batch["input_ids"])

    def encode(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        kwargs = {"inputs_embeds": emb, "attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        return self.encoder(**kwargs).last_hidden_state

    def sentence_vector(self, emb: Tensor, batch: dict[str, Any], pooling: str = "mean") -> Tensor:
        """One vector per sequence: the encoder's own (USE) or its token states pooled by ``pooling``."""
        if is_sentence_encoder(self.encoder):
            return self.encoder(inputs_embeds=emb, attention_mask=batch["attention_mask"]).pooler_output
        return pool(self.encode(emb, batch), batch["attention_mask"], pooling)

    def regularization_terms(self) -> dict[str, Tensor]:
        orth = adalora_orthogonality(self.encoder)
        return {} if orth is None else {"adalora_orth": orth}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # AdaLoRA re-allocates ranks from the gradients after each optimizer step (peft's documented loop)
        base = getattr(self.encoder, "base_model", None)
        if base is not None and hasattr(base, "update_and_allocate"):
            base.update_and_allocate(self.global_step)  # type: ignore[attr-defined]

    # -- checkpoints ----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # the frozen base of an adapter-only checkpoint is rebuilt from this directory on load
        checkpoint["zoo"]["base_model"] = str(resolve_encoder(self.encoder_name))

    # -- export ---------------------------------------------------------------------------------------
    def export_meta(self) -> dict[str, Any]:
        """What ``zoo_head.json`` records next to the head's weights (task, labels, decoding settings)."""
        raise NotImplementedError

    def merge_and_export(self, out_dir: str | Path) -> Path:
        """A plain HF encoder directory (adapters merged, safetensors) + tokenizer + ``zoo_head.safetensors``
        (the linear head) + ``zoo_head.json`` (:meth:`export_meta`)."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        encoder = copy.deepcopy(self.encoder).cpu()
        if self.uses_adapters():
            encoder = encoder.merge_and_unload()
        encoder.save_pretrained(str(out), safe_serialization=True)
        load_tokenizer(self.encoder_name).save_pretrained(str(out))
        linear = self.head[1]
        save_file({k: v.detach().cpu().contiguous() for k, v in linear.state_dict().items()},
                  str(out / "zoo_head.safetensors"))
        atomic_write_text(out / "zoo_head.json", json.dumps(self.export_meta(), indent=2))
        return out


__all__ = ["CHUNK_POOLING", "EncoderMixin", "pool_windows"]
