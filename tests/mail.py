"""A real SMTP server on loopback (aiosmtpd) for tests that send e-mail, and what it received."""

import email
import email.policy
import socket
import time
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


GREYLISTED = "451 4.7.1 Greylisted, please try again later"


@dataclass
class MailHandler:
    """What the loopback SMTP server received, and the replies it is told to give."""

    received: list = field(default_factory=list)
    # recipient -> list of replies to give to RCPT TO, one per attempt ("" accepts).
    rcpt_replies: dict = field(default_factory=dict)
    # Greylisting, as Postgrey and its kind do it: RCPT TO of a (sender, recipient) pair is
    # refused for now until this many seconds have passed since the pair's first attempt.
    greylist_seconds: float = 0.0
    first_attempts: dict = field(default_factory=dict)
    # (recipient, reply) of every RCPT TO refused.
    refused: list = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.greylist_seconds:
            pair = ((envelope.mail_from or "").lower(), address.lower())
            first = self.first_attempts.setdefault(pair, time.monotonic())
            if time.monotonic() - first < self.greylist_seconds:
                self.refused.append((address, GREYLISTED))
                return GREYLISTED
        replies = self.rcpt_replies.get(address.lower())
        if replies:
            reply = replies.pop(0)
            if reply:
                self.refused.append((address, reply))
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
    """Listening between start() and stop(); stopped, its port is closed (connections are
    refused, as of a mail server that is down), and start() opens the same port again with
    the same handler, so what it received and the greylist survive an outage."""

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
