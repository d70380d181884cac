"""The operations side of a server: a live web page, Prometheus metrics and health endpoints.

See docs/operations.md. The package never imports the server: sources.py
says, as Protocols, what it needs from it, and the command line wires the two.
"""
