"""Benchmarks of the project; each writes its result under bench/results/."""
