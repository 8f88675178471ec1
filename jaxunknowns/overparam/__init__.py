"""Why over-parameterized networks generalize: randomization tests, width
sweeps, double descent, memorization vs patterns, mode connectivity and the
kernel regime, their reports and the papers' numbers (papers.py)."""
