"""``python -m tests.forgesim.github --port P --token T`` (kept for old callers)."""

from tests.forgesim.github import main

main()
