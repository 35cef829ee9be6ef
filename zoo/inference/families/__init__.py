"""zoo's built-in export families, one module each (registered on import); :mod:`zoo.inference.family` is the
contract they implement."""

from zoo.inference.families.image import ImageClassification
from zoo.inference.families.ngram import NgramTextClassification
from zoo.inference.families.recommendation import FullSortGraph, Recommendation, TableScorer
from zoo.inference.families.text import EncoderFamily, TextClassification, classifier_answers
from zoo.inference.families.token import WORD_RE, TokenClassification, iob_entities
from zoo.inference.families.words import WordTagging
from zoo.inference.family import FAMILIES, ExportSpec, Family, FamilyError, family_of, register_family
from zoo.inference.requests import InferenceInputError, probability_answers, text_field

__all__ = ["FAMILIES", "WORD_RE", "EncoderFamily", "ExportSpec", "Family", "FamilyError", "FullSortGraph",
           "ImageClassification", "InferenceInputError", "NgramTextClassification", "Recommendation", "TableScorer",
           "TextClassification", "TokenClassification", "WordTagging", "classifier_answers", "family_of",
           "iob_entities", "probability_answers", "register_family", "text_field"]
