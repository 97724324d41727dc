"""Tiny TCP servers on 127.0.0.1 that misbehave on purpose, for the delivery tests
(tests/delivery_timeouts.rs, tests/imap_refusals.rs). Standard library only.

Usage: python3 misbehaving_server.py PORT MODE [ARG]     (stopped with SIGTERM)

Modes:
  silent          accepts connections and never writes a byte
  smtp-greet      greets (220), then reads and never answers
  smtp-ehlo       greets (220) and answers EHLO, then reads and never answers again
  imap-greet      greets (* OK) and never answers again
  imap-append R   a minimal IMAP server: LOGIN, CREATE, EXAMINE, UID SEARCH (no hits) and
                  LOGOUT succeed; APPEND takes the literal and is answered "<tag> R", for
                  example R = "NO [OVERQUOTA] Quota exceeded"
"""
import socketserver
import sys


def read_forever(conn):
    """Reads and discards until the client closes; never answers."""
    while conn.recv(4096):
        pass


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        mode = self.server.mode
        try:
            if mode == "silent":
                read_forever(conn)
            elif mode == "smtp-greet":
                conn.sendall(b"220 127.0.0.1 ESMTP misbehaving\r\n")
                read_forever(conn)
            elif mode == "smtp-ehlo":
                conn.sendall(b"220 127.0.0.1 ESMTP misbehaving\r\n")
                f = conn.makefile("rb")
                line = f.readline()
                if line.upper().startswith((b"EHLO", b"HELO")):
                    conn.sendall(b"250-127.0.0.1\r\n250 8BITMIME\r\n")
                read_forever(conn)
            elif mode == "imap-greet":
                conn.sendall(b"* OK [CAPABILITY IMAP4rev1] misbehaving ready\r\n")
                read_forever(conn)
            elif mode == "imap-append":
                self.imap_append(conn, self.server.arg.encode())
            else:
                raise SystemExit(f"unknown mode {mode}")
        except (ConnectionError, OSError):
            pass

    def imap_append(self, conn, reply):
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        f = conn.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return
            parts = line.rstrip(b"\r\n").split(b" ", 2)
            tag = parts[0]
            cmd = parts[1].upper() if len(parts) > 1 else b""
            if cmd == b"UID":
                conn.sendall(b"* SEARCH\r\n" + tag + b" OK SEARCH completed\r\n")
            elif cmd == b"EXAMINE":
                conn.sendall(b"* 0 EXISTS\r\n" + tag + b" OK [READ-ONLY] EXAMINE completed\r\n")
            elif cmd == b"APPEND":
                size = int(line.rstrip(b"\r\n").rsplit(b"{", 1)[1].rstrip(b"}+"))
                conn.sendall(b"+ go ahead\r\n")
                f.read(size + 2)
                conn.sendall(tag + b" " + reply + b"\r\n")
            elif cmd == b"LOGOUT":
                conn.sendall(b"* BYE logging out\r\n" + tag + b" OK LOGOUT completed\r\n")
                return
            else:
                conn.sendall(tag + b" OK " + cmd + b" completed\r\n")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    port = int(sys.argv[1])
    server = Server(("127.0.0.1", port), Handler)
    server.mode = sys.argv[2]
    server.arg = sys.argv[3] if len(sys.argv) > 3 else ""
    server.serve_forever()


if __name__ == "__main__":
    main()
