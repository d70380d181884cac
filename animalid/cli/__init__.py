"""The command-line programs: client, server, classify, hub and demo.

Each command builds its settings from config.ini at the start and hands them
down; ``runner`` is the one place that sets up logging and turns errors into
one line and an exit status.
"""
