"""skypanda: a PanDA-family workload management system, embedded or serverless on Google Cloud."""

__version__ = "0.1.0"
__all__ = ["__version__"]
