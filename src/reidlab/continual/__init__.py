"""Continual learning: a sequence of tasks (datasets) trained one after another by the
shared engine, the accuracy matrix R[t][d] and its summaries (average over seen tasks,
forgetting, backward transfer), and Learning without Forgetting's frozen teacher."""
