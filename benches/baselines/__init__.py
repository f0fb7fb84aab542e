"""Reference implementations that the Python benchmarks compare ul2 against."""
