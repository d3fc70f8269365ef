"""User-facing programs: the `smop-edge` command line and, later, the live-captioning apps."""
