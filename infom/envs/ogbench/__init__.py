"""OGBench's manipulation domains: dataset names, local generation with OGBench's oracles,
validation, loading and evaluation."""
