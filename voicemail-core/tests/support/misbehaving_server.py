"""Tiny TCP servers on 127.0.0.1 that misbehave on purpose, for the delivery tests
(tests/delivery_timeouts.rs, tests/imap_refusals.rs, tests/imap_hostile_server.rs). Standard
library only.

Usage: python3 misbehaving_server.py PORT MODE [ARG]     (stopped with SIGTERM)

Modes:
  silent          accepts connections and never writes a byte
  smtp-greet      greets (220), then reads and never answers
  smtp-ehlo       greets (220) and answers EHLO, then reads and never answers again
  imap-greet      greets (* OK) and never answers again
  imap-append R   a minimal IMAP server: LOGIN, CREATE, EXAMINE, UID SEARCH (no hits) and
                  LOGOUT succeed; APPEND takes the literal and is answered "<tag> R", for
                  example R = "NO [OVERQUOTA] Quota exceeded"
  imap-hostile F  an IMAP server for the folder watcher that answers delivery (EXAMINE, no
                  search hits, APPEND OK) properly, and each watcher session (SELECT) in turn
                  with something hostile: 1: absurd numbers and broken FETCH responses, then
                  a broken list and BYE in IDLE; 2: a literal of 99999999 bytes; 3: a valid
                  FETCH with VM-CalledBack, then BYE in IDLE; 4: a 2 MiB line without end.
                  Appends the session's number to file F at each SELECT.
"""
import socketserver
import sys
import threading


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
            elif mode == "imap-hostile":
                self.imap_hostile(conn, self.server.arg)
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


    def imap_hostile(self, conn, logfile):
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 IDLE CONDSTORE UIDPLUS] hostile\r\n")
        f = conn.makefile("rb")
        variant = None
        while True:
            line = f.readline()
            if not line:
                return
            parts = line.rstrip(b"\r\n").split(b" ")
            tag = parts[0]
            cmd = b" ".join(parts[1:3]).upper() if len(parts) > 2 and parts[1].upper() == b"UID" else (
                parts[1].upper() if len(parts) > 1 else b"")
            ok = tag + b" OK done\r\n"
            if cmd == b"CAPABILITY":
                conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE CONDSTORE UIDPLUS\r\n" + ok)
            elif cmd == b"SELECT":
                with self.server.lock:
                    self.server.sessions += 1
                    number = self.server.sessions
                with open(logfile, "a") as log:
                    log.write(f"{number}\n")
                variant = number % 4
                if variant == 0:
                    conn.sendall(b"* " + b"x" * (2 * 1024 * 1024))
                    read_forever(conn)
                    return
                conn.sendall(
                    b"* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n"
                    b"* OK [HIGHESTMODSEQ 18446744073709551616] too big\r\n"
                    b"* OK [HIGHESTMODSEQ 5] ok\r\n* OK [PERMANENTFLAGS (\\*)] ok\r\n"
                    + tag + b" OK [READ-WRITE] done\r\n")
            elif cmd == b"EXAMINE":
                conn.sendall(b"* 0 EXISTS\r\n" + tag + b" OK [READ-ONLY] done\r\n")
            elif cmd == b"UID SEARCH":
                if variant is None:
                    conn.sendall(b"* SEARCH\r\n" + ok)
                elif variant == 1:
                    conn.sendall(b"* SEARCH 1 99999999999 -1 abc (MODSEQ x\r\n" + ok)
                else:
                    conn.sendall(b"* SEARCH 1\r\n" + ok)
            elif cmd == b"UID FETCH":
                if variant == 1:
                    conn.sendall(
                        b"* 1 FETCH (UID 4294967296 FLAGS (a))\r\n"
                        b"* 1 FETCH (UID 1 FLAGS ((((((((((((((((x)))))))))))))))) MODSEQ (1))\r\n"
                        b"* 1 FETCH (UID 1 FLAGS (\"unterminated)\r\n"
                        b"* 1 FETCH (UID 1 FLAGS {3}\r\nabc MODSEQ (((\r\n"
                        b"* 99999999999 FETCH (UID 1)\r\n* FETCH\r\n* 1 FETCH )))\r\n" + ok)
                elif variant == 2:
                    conn.sendall(b"* 1 FETCH (UID 1 FLAGS {99999999}\r\n")
                    read_forever(conn)
                    return
                else:
                    conn.sendall(b"* 1 FETCH (UID 1 FLAGS (\\Seen VM-CalledBack) MODSEQ (6))\r\n" + ok)
            elif cmd == b"UID STORE":
                conn.sendall(tag + b" NO [CANNOT] no keywords here\r\n")
            elif cmd == b"IDLE":
                conn.sendall(b"+ idling\r\n* 1 FETCH ((((((((((((((((((((\r\n* BYE going away\r\n")
                read_forever(conn)
                return
            elif cmd == b"APPEND":
                size = int(line.rstrip(b"\r\n").rsplit(b"{", 1)[1].rstrip(b"}+"))
                conn.sendall(b"+ go ahead\r\n")
                f.read(size + 2)
                conn.sendall(tag + b" OK [APPENDUID 7 1] done\r\n")
            elif cmd == b"LOGOUT":
                conn.sendall(b"* BYE logging out\r\n" + ok)
                return
            else:
                conn.sendall(ok)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    port = int(sys.argv[1])
    server = Server(("127.0.0.1", port), Handler)
    server.mode = sys.argv[2]
    server.arg = sys.argv[3] if len(sys.argv) > 3 else ""
    server.sessions = 0
    server.lock = threading.Lock()
    server.serve_forever()


if __name__ == "__main__":
    main()
