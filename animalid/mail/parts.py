"""Adding an attachment to a message without a stray MIME-Version header on the part.

``EmailMessage.add_attachment`` builds each part as an ``EmailMessage``, whose
``set_content`` writes ``MIME-Version: 1.0`` into the part. RFC 2045 section 4
asks for that header in the message's top-level header only; some mail
programs show the stray copy. A ``MIMEPart`` (the email package's class for
parts) has no such habit.
"""

from __future__ import annotations

from email.message import EmailMessage, MIMEPart
from typing import cast


def attach(message: EmailMessage, data: bytes, maintype: str, subtype: str, filename: str) -> None:
    """Add ``data`` as an attachment part (base64, Content-Disposition: attachment)."""
    part = MIMEPart(policy=message.policy)
    part.set_content(data, maintype=maintype, subtype=subtype, filename=filename)
    if message.get_content_maintype() != "multipart":
        message.make_mixed()
    message.attach(cast(EmailMessage, part))  # typeshed types parts as the message's own class
