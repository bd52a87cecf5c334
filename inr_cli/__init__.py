"""The command line and the outside world: commands, media files, progress, reports, exit codes."""
