"""Hypothesis profiles: "default" keeps the suite fast (no per-example deadline: the first
call of a kernel may compile); HYPOTHESIS_PROFILE=thorough runs ten times more examples."""
import os

from hypothesis import settings

settings.register_profile("default", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=600, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
