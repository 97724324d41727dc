"""An aiosmtpd server on 127.0.0.1 that requires AUTH (user "vm", password "secret") without
TLS and stores accepted messages in a Maildir. Used by tests/smtp_outage.rs.

Usage: /usr/bin/python3 smtp_auth_server.py PORT MAILDIR   (stopped with SIGTERM)
"""
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"vm"
        and auth_data.password == b"secret"
    )
    # handled=False: let aiosmtpd send the 535 reply itself (the default sends nothing).
    return AuthResult(success=ok, handled=False)


def main():
    port = int(sys.argv[1])
    controller = Controller(
        Mailbox(sys.argv[2]),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
