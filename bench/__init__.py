"""Benchmarks and the evaluation-set helpers they share with the tests."""
