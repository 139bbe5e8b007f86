"""``python -m orchestrator`` is the same as the ``runner-orchestrator`` command."""

from orchestrator.cli import main

raise SystemExit(main())
