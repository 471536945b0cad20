"""The ``nca`` command. Each subcommand lives in its own module and is imported only when run."""
