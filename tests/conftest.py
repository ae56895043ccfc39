"""Suite-wide settings: the Hypothesis profiles.

"dev" (the default) for local runs; "ci" (selected when the CI environment
variable is set) is derandomized so a CI failure reproduces exactly, and prints
the blob that replays a failing example.
"""
import os

from hypothesis import Phase, settings

# deadline=None: a gradcheck's run time grows with the drawn shape, and timing
# noise on shared CI machines must not fail a correctness test.
# No "explain" phase: it re-runs a failing test many times to annotate the example,
# which makes a student's unfinished exercise take ~25 s per test to report.
PHASES = tuple(p for p in Phase if p is not Phase.explain)
settings.register_profile("dev", max_examples=30, deadline=None, phases=PHASES)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True, phases=PHASES)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
