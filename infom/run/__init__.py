"""The `infom` command, the run directory, presets and the Pendulum demo."""
