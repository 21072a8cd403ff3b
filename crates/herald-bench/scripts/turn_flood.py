#!/usr/bin/env python3
"""300 ?wait=false posts with a 20 s command agent: agent processes and worker threads (issue 15 #5)."""
import json, os, subprocess, sys, time, urllib.request, concurrent.futures
H = sys.argv[1]; home = sys.argv[2]; limit = sys.argv[3] if len(sys.argv) > 3 else None
os.makedirs(home, mode=0o700, exist_ok=True)
extra = f"max_concurrent_turns = {limit}\n" if limit else ""
open(f"{home}/herald.toml", "w").write('[http]\nlisten = "127.0.0.1:0"\n[agent]\nbackend = "command"\n' + extra +
    '[agent.command]\ncommand = ["sh", "-c", "cat >/dev/null; sleep 20; echo done"]\ntimeout_secs = 60\n')
subprocess.run([H, "--home", home, "start"], check=True)
state = json.load(open(f"{home}/run/state.json"))
url = state["endpoints"]["http_url"]; worker = state.get("worker_pid") or state["pid"]
def threads(pid):
    return int([l for l in open(f"/proc/{pid}/status") if l.startswith("Threads:")][0].split()[1])
def rss(pid):
    return int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")][0].split()[1]) // 1024
def sleepers():
    n = 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if open(f"/proc/{p}/cmdline","rb").read() == b"sleep\x0020\x00": n += 1
            except OSError: pass
    return n
print(f"idle: {threads(worker)} threads, {rss(worker)} MB")
def post(i):
    req = urllib.request.Request(f"{url}/v1/sessions/s{i%10}/messages?wait=false", data=json.dumps({"text": f"m{i}"}).encode(), headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req).status
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    codes = list(ex.map(post, range(300)))
print(f"300 posts in {time.time()-t0:.2f}s: {set(codes)}")
time.sleep(2.5)
peak_threads = threads(worker); agents = sleepers()
st = subprocess.run([H, "--home", home, "status"], capture_output=True, text=True).stdout
print(f"2.5 s later: {agents} agent processes, {peak_threads} worker threads, {rss(worker)} MB")
print([l for l in st.splitlines() if "turns" in l])
subprocess.run([H, "--home", home, "stop", "--timeout", "5"], capture_output=True)
