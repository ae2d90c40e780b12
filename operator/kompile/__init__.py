"""Kompile: compile ML models for their hardware with Apache TVM and serve them on Kubernetes."""

__version__ = "0.1.0"
