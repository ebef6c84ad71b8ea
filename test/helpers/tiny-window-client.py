#!/usr/bin/env python3
"""A client whose receive window is a few kilobytes, for backpressure tests.

Node.js cannot set SO_RCVBUF on a TCP socket, and with the kernel's default buffers a
client that "stops reading" still absorbs hundreds of kilobytes. This client sets SO_RCVBUF
before connecting, so anything larger than a few KB backs up into the proxy at once: a
response that fits in one read of the proxy cannot be written in full, deterministically.

Usage: tiny-window-client.py PORT  (then commands on stdin, one per line)
  send HEX        write these bytes (hex-encoded)
  read N          read until N bytes in all have been received (or the peer closes)
  close           close and exit
Prints one line per command: "sent", "read TOTAL CLOSED", "closed".
"""
import socket
import sys

port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
# A small MSS keeps the proxy's send buffer small too: Linux sizes a connection's initial
# send buffer from its MSS (tcp_sndbuf_expand: ~2 x 10 segments), and loopback's 64 KB MSS
# would let it absorb megabytes.
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
s.connect(("127.0.0.1", port))
print("connected", flush=True)
received = bytearray()
peer_closed = False
for line in sys.stdin:
    parts = line.split()
    if not parts:
        continue
    if parts[0] == "send":
        s.sendall(bytes.fromhex(parts[1]))
        print("sent", flush=True)
    elif parts[0] == "read":
        want = int(parts[1])
        while len(received) < want and not peer_closed:
            chunk = s.recv(65536)
            if not chunk:
                peer_closed = True
                break
            received.extend(chunk)
        print("read %d %d" % (len(received), 1 if peer_closed else 0), flush=True)
    elif parts[0] == "dump":
        print("dump " + bytes(received).hex(), flush=True)
    elif parts[0] == "close":
        break
s.close()
print("closed", flush=True)
