"""Benchmarks: latency statistics, accuracy, and the machine facts that go with every result."""
