"""One module per `inr` command: its Typer declaration, the config it builds from the options, and its run."""
