#!/usr/bin/env python3
"""APPEND messages one by one over implicit TLS, as a client importing
mail does (issue 10: 2,000 messages took 131 s against mailvault, 43 s
against Dovecot), and print one line of JSON: how many were APPENDed in
how many seconds, the rate overall and over the last quarter (an APPEND
whose cost grows with the folder shows there).

  append.py HOST PORT USER PASSWORD MBOX COUNT SECS

MBOX is an mbox file whose messages are APPENDed in turn (each with a
date, as imaptest and mail importers do); SECS bounds the run.
"""
import imaplib, json, ssl, sys, time

host, port, user, password, mbox, count, secs = sys.argv[1:8]
count, secs = int(count), float(secs)

msgs, cur = [], []
with open(mbox, "rb") as f:
    for line in f:
        if line.startswith(b"From ") and cur:
            msgs.append(b"".join(cur))
            cur = []
        elif not line.startswith(b"From "):
            cur.append(line.rstrip(b"\n") + b"\r\n")
if cur:
    msgs.append(b"".join(cur))

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
c = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx)
c.login(user, password)
c.create("Import")
c.select("Import")
times = []
start = time.monotonic()
for i in range(count):
    typ, _ = c.append("Import", r"(\Seen)", imaplib.Time2Internaldate(1765000000 + i), msgs[i % len(msgs)])
    if typ != "OK":
        sys.exit(f"APPEND {i}: {typ}")
    times.append(time.monotonic())
    if times[-1] - start >= secs:
        break
c.logout()
n, took = len(times), times[-1] - start
q = max(1, n // 4)
last = (q / (times[-1] - times[-q - 1])) if n > q else n / took
print(json.dumps({"appended": n, "seconds": round(took, 2), "per_second": round(n / took, 1), "last_quarter_per_second": round(last, 1)}))
