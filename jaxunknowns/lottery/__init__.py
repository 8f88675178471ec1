"""Lottery tickets: iterative magnitude pruning with rewinding (imp), pruning
at initialization and its sanity checks (prune_init), their reports and the
papers' numbers (papers.py)."""
