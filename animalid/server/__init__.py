"""PC 2: the service that watches a mailbox, classifies and answers, and its ledger."""
