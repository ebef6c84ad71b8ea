#!/usr/bin/env python3
"""A one-connection HTTP server with a receive window of a few KB, for backpressure tests.

Node.js cannot set SO_RCVBUF or TCP_MAXSEG on a TCP socket; with the kernel's defaults a
server that "stops reading" still absorbs megabytes. This one sets both on its listening
socket (accepted connections inherit them), so a proxy writing to it backs up after a few
KB, at the point the test chooses. It reads nothing until told to.

Usage: tiny-window-server.py  (prints "port N", then takes commands on stdin, one per line)
  drain N      read until the request head and N body bytes have arrived (or the peer closed); prints "drained BODYBYTES"
  body         print the length and SHA-256 of what followed the request head ("body LENGTH HEX")
  answer HEX   write these bytes (hex-encoded) as the response; prints "answered"
  close        close and exit
"""
import hashlib
import socket
import sys

listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
listener.bind(("127.0.0.1", 0))
listener.listen(8)
print("port %d" % listener.getsockname()[1], flush=True)
connection, _ = listener.accept()
print("accepted", flush=True)
received = bytearray()


def body_length(data):
    """Bytes after the request head, or -1 while the head is incomplete."""
    end = data.find(b"\r\n\r\n")
    return -1 if end == -1 else len(data) - end - 4


for line in sys.stdin:
    parts = line.split()
    if not parts:
        continue
    if parts[0] == "drain":
        want = int(parts[1])
        while body_length(received) < want:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received.extend(chunk)
        print("drained %d" % body_length(received), flush=True)
    elif parts[0] == "body":
        body = bytes(received[received.find(b"\r\n\r\n") + 4:])
        print("body %d %s" % (len(body), hashlib.sha256(body).hexdigest()), flush=True)
    elif parts[0] == "answer":
        connection.sendall(bytes.fromhex(parts[1]))
        print("answered", flush=True)
    elif parts[0] == "close":
        break
connection.close()
listener.close()
print("closed", flush=True)
