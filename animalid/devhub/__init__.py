"""The local mail hub for development and tests: Dovecot plus an SMTP front, on loopback.

Apart from the runtime: it imports only animalid.config and animalid.errors, and no
runtime module imports it (the import contracts in pyproject.toml say so).
"""
