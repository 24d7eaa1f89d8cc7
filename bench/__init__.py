"""Benchmarks that print ratios against the tools people use today (`make bench`)."""
