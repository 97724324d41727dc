"""An aiosmtpd server on 127.0.0.1 that refuses some commands with a chosen reply and stores
the messages it accepts in a Maildir. Used by tests/smtp_refusals.rs.

Usage: /usr/bin/python3 smtp_refusing_server.py PORT MAILDIR RULE...   (stopped with SIGTERM)

Rules:
  mail=REPLY          reply to every MAIL FROM, e.g. "mail=553 5.1.8 Sender address rejected"
  rcpt:ADDRESS=REPLY  reply to RCPT TO:<ADDRESS>, e.g. "rcpt:nobody@example.org=550 5.1.1 No such user"
  data=REPLY          reply to the end of DATA (the final dot), e.g. "data=554 5.7.1 Message rejected"
"""
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


class Refusing(Mailbox):
    def __init__(self, maildir, rules):
        super().__init__(maildir)
        self.rules = rules

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.rules.get("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rules.get("rcpt:" + address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self.rules.get("data")
        if reply:
            return reply
        return await super().handle_DATA(server, session, envelope)


def main():
    port = int(sys.argv[1])
    rules = {}
    for rule in sys.argv[3:]:
        key, reply = rule.split("=", 1)
        rules[key.lower()] = reply
    controller = Controller(Refusing(sys.argv[2], rules), hostname="127.0.0.1", port=port)
    controller.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
