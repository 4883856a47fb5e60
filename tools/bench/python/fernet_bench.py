"""Times python `cryptography` Fernet encrypt/decrypt at the sizes given; prints JSON ops/s.

Usage: python3 fernet_bench.py SECONDS KEY SIZE...   (called by src/fernet.ts in the same run)
"""
import json
import os
import sys
import time

from cryptography.fernet import Fernet


def rate(fn, seconds):
    # Warm up, then run batches until the CPU time is spent; ops per CPU-second (as the node side).
    for _ in range(200):
        fn()
    n, start = 0, time.process_time()
    while True:
        for _ in range(200):
            fn()
        n += 200
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return n / elapsed


def main():
    seconds = float(sys.argv[1])
    key = sys.argv[2].encode()
    sizes = [int(s) for s in sys.argv[3:]]
    f = Fernet(key)
    out = []
    for size in sizes:
        msg = os.urandom(size)
        token = f.encrypt(msg)
        out.append({
            "size": size,
            "encrypt": rate(lambda: f.encrypt(msg), seconds),
            "decrypt": rate(lambda: f.decrypt(token), seconds),
        })
    print(json.dumps({"results": out}))


main()
