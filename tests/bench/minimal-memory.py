#!/usr/bin/env python3
"""lockstep-minimal's memory, measured: the stripped dist binary's size, its RSS idle and after
100,000 requests on one kept-alive connection (alternately /healthz and /deployments).

    python3 tests/bench/minimal-memory.py
"""
import subprocess, os, time, http.client, tempfile, sys
import pathlib
ROOT=pathlib.Path(__file__).resolve().parents[2]
subprocess.run(['cargo','build','--profile','dist','-q','-p','lockstep-minimal'],cwd=ROOT,check=True)
B=os.environ.get('BIN') or str(ROOT/'target'/'dist'/'lockstep-minimal'); d=tempfile.mkdtemp()
print('dist binary', os.path.getsize(B), 'bytes')
p=subprocess.Popen([B,'--listen','127.0.0.1:0','--repository','/tmp','--conductr','http://127.0.0.1:9','--data-dir',d],env=dict(os.environ,BINTRAY_WEBHOOK_SECRET='x'),stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True)
addr=p.stdout.readline().split('//')[-1].strip(); h,pt=addr.split(':')
rss=lambda: int(open(f'/proc/{p.pid}/status').read().split('VmRSS:')[1].split()[0])
time.sleep(0.5)
c=http.client.HTTPConnection(h,int(pt))
def get(path):
    c.request('GET',path); r=c.getresponse(); r.read(); return r.status
for _ in range(100): get('/healthz')
idle=rss()
t=time.time()
for i in range(100000): get('/healthz' if i%2 else '/deployments')
after=rss()
print(f"idle {idle} kB, after 100,000 kept-alive requests {after} kB (+{after-idle} kB) in {time.time()-t:.1f}s")
p.terminate(); p.wait()
