"""Benchmarks, run by ``make bench``; each prints a table of medians and ratios."""
