"""``python -m realtube_push`` is the ``realtube-push`` command."""

from realtube_push.cli import main

raise SystemExit(main())
