"""A real SMTP server on loopback (aiosmtpd) for tests that send e-mail, and what it received."""

import email
import email.policy
import socket
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MailHandler:
    """What the loopback SMTP server received, and the replies it is told to give."""

    received: list = field(default_factory=list)
    # recipient -> list of replies to give to RCPT TO, one per attempt ("" accepts).
    rcpt_replies: dict = field(default_factory=dict)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        replies = self.rcpt_replies.get(address.lower())
        if replies:
            reply = replies.pop(0)
            if reply:
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        for recipient in envelope.rcpt_tos:
            self.received.append((recipient, message))
        return "250 Message accepted for delivery"

    def to(self, recipient: str) -> list:
        return [message for address, message in self.received if address == recipient]


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.handler = MailHandler()
        self.controller = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
