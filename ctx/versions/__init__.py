"""Configuration versions, labels, A/B experiments and offline evaluation."""
