"""``python -m tools.config_reference``."""

from tools.config_reference import main

raise SystemExit(main())
