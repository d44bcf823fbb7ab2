"""The loop and what it runs per batch: positions, processing, conclusion, accounting."""
