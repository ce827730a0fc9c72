"""Shipped recipes: one YAML file per published pipeline (package data, see ``medattn recipes``)."""
