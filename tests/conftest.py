from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI machines are shared and slow: examples are bounded by count, not by a deadline.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")

# Tests build their own Settings; stray STREAMWATCH_ variables must not leak in. The
# test tooling's own (an existing broker, the broker jar cache) stay.
TOOLING = {"STREAMWATCH_TEST_BOOTSTRAP", "STREAMWATCH_KAFKA_CACHE"}
for name in [n for n in os.environ if n.startswith("STREAMWATCH_") and n not in TOOLING]:
    del os.environ[name]
