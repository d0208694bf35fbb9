"""bertclf: a reproducible DVC pipeline for BERT-based text classifiers."""

__version__ = "0.1.0"
