"""Cheap reference models every run is compared with (TF-IDF, pixels, most popular, most frequent tag)."""
