"""Why BatchNorm works: BN-only training, train/eval modes, batch size,
placement, regularization, smoothness and stability, their reports and the
papers' numbers (papers.py)."""
