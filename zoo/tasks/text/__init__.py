"""Text tasks on Hugging Face encoders: ``TextClassifier`` (single- and multi-label) and ``TokenClassifier`` (NER).

Split by role: :mod:`.encoder` (the encoder, PEFT, the embed / encode pair, adapter-only checkpoints, export),
:mod:`.labels` (what differs between single- and multi-label classification), :mod:`.classifier`,
:mod:`.token` and :mod:`.tiny` (the registry's tiny test cases).

With ``peft`` set (LoRA / IA3 / AdaLoRA) checkpoints hold only the trainable tensors (adapters + head) and a
reference to the base encoder; loading rebuilds the base from that reference and lays the saved tensors on top.
``merge_and_export(dir)`` writes a plain Hugging Face encoder (adapters merged, safetensors) + tokenizer + head.

Checkpoints record the classes as ``zoo.tasks.text.TextClassifier`` / ``zoo.tasks.text.TokenClassifier`` (and
recipes name them so): these re-exports keep those paths resolving.
"""

from zoo.registry import MODELS
from zoo.tasks.text.classifier import TextClassifier
from zoo.tasks.text.crf_tagger import CRFTagger
from zoo.tasks.text.encoder import EncoderMixin
from zoo.tasks.text.labels import LabelMode, MultiLabel, SingleLabel
from zoo.tasks.text.ngram import BagOfNgramsTask, FastTextClassifier
from zoo.tasks.text.tfidf import TfidfClassifier
from zoo.tasks.text.tiny import tiny_crf_tagger_case, tiny_text_case, tiny_token_case
from zoo.tasks.text.tiny_ngram import tiny_fasttext_case, tiny_tfidf_case
from zoo.tasks.text.token import TokenClassifier

# registered here rather than on the classes: the tiny cases build the classes, so they live in a module after them
MODELS.register("text_classifier", tags=("text",), tiny_case=tiny_text_case,
                summary="single/multi-label text classifier on a HF encoder (MiniLM by default), optional PEFT",
                )(TextClassifier)
MODELS.register("token_classifier", tags=("text", "ner"), tiny_case=tiny_token_case,
                summary="token classifier (NER, IOB2) on a HF encoder with entity-level F1 (seqeval), optional PEFT",
                )(TokenClassifier)
MODELS.register("crf_tagger", tags=("text", "ner"), tiny_case=tiny_crf_tagger_case,
                summary="NER in any language without pretrained weights: char CNN + SentencePiece subwords + BiLSTM + "
                        "IOB2-constrained CRF (optional USE-m3 subword init)",
                )(CRFTagger)
MODELS.register("fasttext", tags=("text", "ngram"), tiny_case=tiny_fasttext_case,
                summary="fastText-style classifier: hashed word + char n-grams -> EmbeddingBag -> linear (any script)",
                )(FastTextClassifier)
MODELS.register("tfidf", tags=("text", "ngram"), tiny_case=tiny_tfidf_case,
                summary="linear classifier on sparse TF-IDF word + char n-grams (any script, no pretrained weights)",
                )(TfidfClassifier)

__all__ = ["BagOfNgramsTask", "CRFTagger", "EncoderMixin", "FastTextClassifier", "LabelMode", "MultiLabel",
           "SingleLabel", "TextClassifier", "TfidfClassifier", "TokenClassifier", "tiny_crf_tagger_case",
           "tiny_fasttext_case", "tiny_text_case", "tiny_tfidf_case", "tiny_token_case"]
