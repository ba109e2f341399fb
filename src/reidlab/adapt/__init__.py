"""Unsupervised domain adaptation by clustering: SSG's round loop (``mode: adapt``), the
DBSCAN and DEC pseudo-labellers and clustering scores, and the two small demos on
scikit-learn's digits (``reidlab dec-digits``, ``reidlab center-demo``)."""
