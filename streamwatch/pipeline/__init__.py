"""The loop and what it runs per batch: positions, the processor (one monitor per
model), the conclusion of closed windows, accounting."""
