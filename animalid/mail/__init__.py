"""Mail transport and formats: accounts and TLS, SMTP, POP3 and IMAP, request and reply
messages, and their optional protection. Knows nothing of PyTorch or the network.
"""
