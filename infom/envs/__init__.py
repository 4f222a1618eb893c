"""Environment adapters used by the command: OGBench (data generation, validation, loading,
evaluation) and gymnax. Not public API."""
