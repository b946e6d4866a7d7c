"""asv benchmarks (``benchmark_dir`` in asv.conf.json): one module per area."""
