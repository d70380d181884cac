"""Trail cameras: photos mailed by cameras are observed, never answered (docs/trail-cameras.md).

``settings`` holds the typed rules of each ``[trail-camera NAME]`` section and
their pure parsers; ``rules`` matches mail to cameras and answers to alert
rules; ``photos`` reads EXIF times and draws alerts' pictures; ``mails``
builds the alert and digest mails; ``keeper`` records observations and visits
in the ledger and sends alerts and digests (SEND, then RECORD).
"""
