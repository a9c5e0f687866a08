"""The `emostream` command line: `main.py` builds the parser and maps errors to exit codes, one module
per subcommand adds its parser and command, `common.py` holds the exit codes and options they share."""
