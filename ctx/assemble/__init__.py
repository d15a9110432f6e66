"""Assembly: candidates → deduplicated, budget-packed, rendered context windows."""
