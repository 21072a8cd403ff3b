#!/usr/bin/env python3
"""8 slow readers of a 65 MB session: the worker's RSS during and after (issue 15 #6)."""
import json, os, socket, subprocess, sys, threading, time, urllib.request
H = sys.argv[1]; home = sys.argv[2]
os.makedirs(home, mode=0o700, exist_ok=True)
open(f"{home}/herald.toml", "w").write('[http]\nlisten = "127.0.0.1:0"\nmax_body_bytes = 131072\n')
subprocess.run([H, "--home", home, "start"], check=True)
state = json.load(open(f"{home}/run/state.json"))
url = state["endpoints"]["http_url"]; worker = state.get("worker_pid") or state["pid"]
host, port = url[len("http://"):].split(":"); port = int(port)
def rss(pid):
    d = {}
    for l in open(f"/proc/{pid}/status"):
        k, v = l.split(":", 1); d[k] = v.strip()
    return int(d["VmRSS"].split()[0]) // 1024, int(d["VmHWM"].split()[0]) // 1024
base = rss(worker)
print("".join(l for l in open(f"/proc/{worker}/status") if l.startswith(("RssAnon", "RssFile", "RssShmem", "Threads"))))
text = "x" * 65000
t0 = time.time()
for i in range(500):
    req = urllib.request.Request(f"{url}/v1/sessions/big/messages", data=json.dumps({"text": f"{i} {text}", "id": f"m{i}"}).encode(), headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
filled = rss(worker)
print(f"filled 500 x 65 KB (+ replies) in {time.time()-t0:.1f}s; rss after fill {filled[0]} MB (peak {filled[1]})")
subprocess.run(["sh", "-c", f"ls -la {home}/state.db*"])
peak = [0]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss(worker)[0]); time.sleep(0.05)
def reader(n, results):
    before = None; total = 0; pages = 0
    while True:
        path = "/v1/sessions/big/messages?limit=1000" + (f"&before={before}" if before else "")
        s = socket.create_connection((host, port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        body = b""
        while True:
            d = s.recv(16384)
            if not d: break
            body += d; time.sleep(0.01)   # slow: ~1.6 MB/s
        s.close()
        doc = json.loads(body.split(b"\r\n\r\n", 1)[1])
        total += len(doc["messages"]); pages += 1
        before = doc.get("next_before")
        if not before: break
    results[n] = (total, pages)
th = threading.Thread(target=sample); th.start()
for round in range(int(os.environ.get("ROUNDS", "1"))):
    results = {}
    readers = [threading.Thread(target=reader, args=(n, results)) for n in range(8)]
    t0 = time.time()
    for r in readers: r.start()
    for r in readers: r.join()
    print(f"round {round+1}: 8 slow readers: {results[0][0]} messages in {results[0][1]} pages each, {time.time()-t0:.1f}s; worker RSS peak so far {peak[0]} MB (baseline {base[0]} MB), now {rss(worker)[0]} MB")
stop.set(); th.join()
time.sleep(3)
print(f"3 s after: {rss(worker)[0]} MB")
time.sleep(32)
print(f"35 s after (one heartbeat): {rss(worker)[0]} MB")
print("".join(l for l in open(f"/proc/{worker}/status") if l.startswith(("RssAnon", "RssFile", "RssShmem", "Threads"))))
subprocess.run([H, "--home", home, "stop"], check=True)
