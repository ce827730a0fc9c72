"""Explanations: CAMs, attention maps, faithfulness."""
