"""gilfree: re-run the benchmark of "The future of Python web services looks GIL-free" (2025-10-18)."""

from pathlib import Path

# The checkout: apps/, results/ and tools/ live here (the harness is installed editable, from scripts/).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
