"""The bench's scenario families, one module each, every one a `run(bench)` that fills `bench.results`."""
