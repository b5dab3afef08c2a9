"""Infrastructure the runner and the tools share: crash-safe files and locks, checkpoints,
progress lines, provenance, the user-facing errors and the libraries' noise kept quiet.

Depends on nothing else in the package.
"""
