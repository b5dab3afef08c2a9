"""The maths, pure and written once: losses and schedules, diffusion models, critics and actors.

Depends on nothing else in the package; everything else builds on it.
"""
