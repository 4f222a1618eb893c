"""The gymnax adapter: JAX data collection and evaluation."""
