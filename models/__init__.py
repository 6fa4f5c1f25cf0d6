"""Network definitions and the one checkpoint format; no data, no training loops."""
