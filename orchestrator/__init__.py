"""runner-orchestrator: autoscale self-hosted GitLab/GitHub CI runners as Docker containers."""

__version__ = "0.1.0"
