"""reidlab: a toolkit for person re-identification research."""

__version__ = "0.1.0"
