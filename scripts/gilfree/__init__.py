"""gilfree: re-run the benchmark of "The future of Python web services looks GIL-free" (2025-10-18)."""
