"""Data layer: formats, splits, audit, transforms and synthetic data."""
