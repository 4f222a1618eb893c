"""Exceptions shared by modules that must stay light to import (no JAX)."""


class DatasetError(ValueError):
    """A dataset is missing an array, or an array has the wrong shape, dtype or values.

    The message always names the source (a file name, or `"<arrays>"`) and the offending key.
    """
