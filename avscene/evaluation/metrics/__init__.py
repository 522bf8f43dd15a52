"""Evaluation metrics, pure numpy (no model, no I/O): training's hold-out figures use them too."""
