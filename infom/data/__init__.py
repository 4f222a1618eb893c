"""Episodic datasets, the observation normaliser, the in-jit transition sampler, and the probe
problems with exact answers."""
