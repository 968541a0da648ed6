"""AIVO: a personal, private AI model for every K-12 learner."""

__version__ = "0.1.0"
