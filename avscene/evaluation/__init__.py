"""Evaluation: a trained model scored on a split (``avscene evaluate``, ``evaluate-separation``),
its metrics (``metrics/``, pure numpy, below training) and the reference methods it is compared with."""
