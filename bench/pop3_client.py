#!/usr/bin/python3
"""pop3_client.py - the pop3-retrieve workload's client (run by bench.py).

One POP3 session with poplib: USER/PASS, LIST, RETR every message, DELE
every message, QUIT.  Prints one JSON object: the wall time from connect
to QUIT's reply (the server's UPDATE state, its expunge, happens before
that reply), messages and bytes retrieved, and this client's own CPU
time, so a reader can tell whether the client was the bottleneck.

Usage: pop3_client.py HOST PORT USER PASSWORD EXPECTED_COUNT
"""
import json
import poplib
import resource
import sys
import time


def main():
    host, port, user, password, expected = sys.argv[1:6]
    expected = int(expected)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.time()
    pop = poplib.POP3(host, int(port), timeout=300)
    pop.user(user)
    pop.pass_(password)
    t_login = time.time()
    _, listing, _ = pop.list()
    if len(listing) != expected:
        raise SystemExit(f"pop3_client: LIST shows {len(listing)} messages, expected {expected}")
    nbytes = 0
    for entry in listing:
        num = entry.split()[0].decode()
        _, lines, _ = pop.retr(num)
        nbytes += sum(len(x) + 2 for x in lines)
    for entry in listing:
        pop.dele(entry.split()[0].decode())
    pop.quit()
    t1 = time.time()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    print(json.dumps({
        "start": t0,
        "login_seconds": t_login - t0,
        "seconds": t1 - t0,
        "messages": len(listing),
        "bytes": nbytes,
        "client_cpu_seconds": cpu,
    }))


if __name__ == "__main__":
    main()
