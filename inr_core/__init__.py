"""What every layer shares and nothing else: the error type for problems the user can fix."""
