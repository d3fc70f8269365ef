"""The `smop-edge` subcommands, one module per command or small group of them: each module's
`register` adds its parsers, every flag beside the `run` function it sets. `apps.cli` assembles them."""
