"""Side-by-side benchmarks: medians of repeated runs after a warm-up, in one process."""
