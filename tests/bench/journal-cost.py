#!/usr/bin/env python3
"""The journal's cost, measured: a scale-3 deployment of the demo through `lockstep serve`
(release build) against `lockstep sandbox`: its commits (fsyncs) and the bytes it appends, the
journal after a restart (compacted, one deployment retained), and an fdatasync of a 1.4 KB
append against the append alone, on the same file system, in the same run.

    python3 tests/bench/journal-cost.py
"""
import subprocess, time, json, urllib.request, hmac, hashlib, os, tempfile, re, sys
import pathlib
ROOT=pathlib.Path(__file__).resolve().parents[2]
B=str(ROOT/'target'/'release'/'lockstep')
subprocess.run(['cargo','build','--release','-q','-p','lockstep'],cwd=ROOT,check=True)
work=tempfile.mkdtemp()
sb=subprocess.Popen([B,'sandbox','--listen','127.0.0.1:0','--demo','--data-dir',work+'/sb','--start-delay','30ms','--stop-delay','10ms'],stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True)
lines=[sb.stdout.readline() for _ in range(6)]
url=lines[0].split()[-1]
comp=[l for l in lines if l.strip().endswith(' compatible')][0].split()[1].split(':',1)[1]
env=dict(os.environ,BINTRAY_WEBHOOK_SECRET='s3cret')
sv=subprocess.Popen([B,'serve','--listen','127.0.0.1:0','--conductr',url,'--repository',url+'/repository','--data-dir',work+'/serve','--poll-interval','100ms'],stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True,env=env)
surl=sv.stdout.readline().split()[-1]
def metric(name):
    m=urllib.request.urlopen(surl+'/metrics').read().decode()
    r=re.search(r'^'+name+r' (\d+)',m,re.M); return int(r.group(1)) if r else None
s0=metric('lockstep_journal_syncs_total'); b0=metric('lockstep_journal_bytes')
body=json.dumps({"package":"visualizer","version":comp},separators=(',',':')).encode()
t=str(int(time.time()))
sig=hmac.new(b's3cret',t.encode()+b'.'+body,hashlib.sha256).hexdigest()
req=urllib.request.Request(surl+'/deployments/typesafe/bundle/typesafe',data=body,headers={'Content-Type':'application/json','X-Lockstep-Signature':f't={t},v1={sig}'})
start=time.time()
i=urllib.request.urlopen(req).read().decode()
while True:
    ev=json.loads(urllib.request.urlopen(surl+'/deployments/'+i).read())
    if ev[-1]['eventType'] in ('deploymentSuccess','deploymentFailure'): break
    time.sleep(0.05)
took=time.time()-start
time.sleep(0.5)
s1=metric('lockstep_journal_syncs_total'); b1=metric('lockstep_journal_bytes')
print(f"outcome {ev[-1]['eventType']}, {len(ev)} events, {took:.2f}s; journal syncs {s1-s0}, bytes {b0}->{b1} (+{b1-b0})")
sv.terminate(); sv.wait(); 
# after restart: compacted size with 1 retained deployment
sv=subprocess.Popen([B,'serve','--listen','127.0.0.1:0','--conductr',url,'--repository',url+'/repository','--data-dir',work+'/serve'],stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True,env=env)
sv.stdout.readline(); time.sleep(0.3)
print('journal after restart (1 retained):', os.path.getsize(work+'/serve/journal'))
sv.terminate(); sb.terminate(); sv.wait(); sb.wait()
# fdatasync cost of a 1.4 KB append, same file system
fd=os.open(work+'/fs',os.O_WRONLY|os.O_CREAT|os.O_APPEND,0o600)
n=500; t0=time.perf_counter()
for _ in range(n): os.write(fd,b'x'*1400)
nosync=(time.perf_counter()-t0)/n
t0=time.perf_counter()
for _ in range(n): os.write(fd,b'x'*1400); os.fdatasync(fd)
sync=(time.perf_counter()-t0)/n
print(f"append 1.4 KB: {nosync*1e6:.1f} us without fdatasync, {sync*1e6:.1f} us with ({sync/nosync:.0f}x)")
