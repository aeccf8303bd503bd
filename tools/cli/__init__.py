"""The `signet` command line, thin: argument parsing, exit statuses and the one error line
(exits.py). Each command group in its own module calls into the subpackages below.
"""
