#!/usr/bin/env python3
"""chaos.py -- network chaos test for crsyncd (stdlib only).

N replicas (crsync-writer --init), each served by `crsyncd run --listen
127.0.0.1:0`; every replication connection goes through a TCP proxy in this
process (node i dials proxy port P_ij, which forwards to node j's current
listen port). While the writers run, the proxy injects faults per connection
(seeded): cut at a byte offset or after a time (FIN or RST via SO_LINGER 0),
half-close one direction, stall a direction 0.1-5 s, deliver bursts in 1-7
byte fragments with delays, refuse new connections for a while (listener
closed or accept+RST), black hole from the accept (handshake timeout must act)
and black hole mid-stream. Bytes are never corrupted, dropped or duplicated
inside a stream. Optionally sidecars are SIGKILLed and restarted.

After the writers stop, chaos stops (new connections and pending triggers are
clean; black holes already in place are left for the sidecars to notice), and
the replicas must converge within --settle seconds (every `--dump` equal, the
origin after " | " ignored). If they do not, the proxy's stuck connections are
reported, then cut (--rescue) to tell a hang from a real divergence.

  python3 scripts/chaos.py --nodes 3 --topology mesh --seconds 60 --seed 7 [--keep DIR]

Not run in CI (minutes per run); uses 127.0.0.1 only and ends every process
it started, by pid. Found the sidecar keeping black-holed connections for
good (now closed by heartbeats) and false restore alarms between nodes that
dial each other (docs/reliability.md).

Exit status 0 = PASS, 1 = FAIL, 2 = usage.
"""
import argparse
import asyncio
import collections
import ctypes
import difflib
import os
import random
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time

# The binaries of a build directory ($BUILD_DIR, default build/ at the
# repository's root; this script builds nothing), or $CRSYNCD and
# $CRSYNC_WRITER.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD_DIR", os.path.join(REPO, "build"))
CRSYNCD = os.environ.get("CRSYNCD", os.path.join(BUILD, "tools", "crsyncd"))
WRITER = os.environ.get("CRSYNC_WRITER", os.path.join(BUILD, "tools", "crsync-writer"))
ALL_FAULTS = ["cut", "rst", "halfclose", "stall", "frag", "refuse", "blackhole", "blackhole-mid"]

T0 = time.monotonic()
OUT = None  # report file


def now():
    return time.monotonic() - T0


def say(msg):
    line = f"[{now():7.1f}s] {msg}"
    print(line, flush=True)
    if OUT:
        OUT.write(line + "\n")
        OUT.flush()


_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    # PR_SET_PDEATHSIG: our children die with us, whatever happens to us.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    os.setpgid(0, 0)  # out of our process group: a ^C goes to us only


def tcp_state(s):
    try:
        return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return -1


TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE", 8: "CLOSE_WAIT", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              9: "LAST_ACK", 11: "CLOSING", 6: "TIME_WAIT", -1: "gone"}


def rst_close(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


# ----------------------------------------------------------------------------
# The proxy
# ----------------------------------------------------------------------------
class Dir:
    """One direction of a proxied connection."""

    def __init__(self):
        self.count = 0            # bytes forwarded
        self.cut_off = None       # offset trigger of the terminal fault, if in this direction
        self.next_stall = None    # monotonic time of the next stall
        self.stall_gap = 5.0
        self.frag_at = None       # offset where the next fragment burst starts
        self.frag_len = 0
        self.frag_gap = 20000
        self.eof = False


class ProxyConn:
    def __init__(self, px, link, k, a):
        self.px, self.link, self.k, self.a = px, link, k, a
        self.b = None
        self.name = f"{link.name}#{k}"
        self.rng = random.Random(f"{px.seed}/{link.name}/{k}")
        self.dirs = [Dir(), Dir()]
        self.pumps = []
        self.fired = False
        self.state = "connecting"
        self.since = now()
        self.bh_since = None
        self.gave_up = [None, None]   # black hole: when each sidecar closed its end
        self.rescued = False
        self.kind = "clean"
        self.trigger = ""
        self.plan(px.chaos)

    # -- the plan ------------------------------------------------------------
    def plan(self, chaos):
        r, f = self.rng, self.px.faults
        kinds = [("clean", 10)]
        if "cut" in f: kinds.append(("cut", 20))
        if "rst" in f: kinds.append(("rst", 20))
        if "halfclose" in f: kinds.append(("halfclose", 15))
        if "blackhole" in f: kinds += [("blackhole", 6), ("rst_accept", 4)]
        if "blackhole-mid" in f and (self.px.max_bh_mid is None or self.px.stats["plan blackhole_mid"] < self.px.max_bh_mid):
            kinds.append(("blackhole_mid", self.px.bh_mid_weight))
        tot = sum(w for _, w in kinds)
        x, kind = r.uniform(0, tot), "clean"
        for k, w in kinds:
            if x < w:
                kind = k
                break
            x -= w
        stall = "stall" in f and r.random() < 0.5
        frag = "frag" in f and r.random() < 0.5
        if not chaos:
            kind, stall, frag = "clean", False, False
        self.kind = kind
        if kind in ("cut", "rst", "halfclose", "blackhole_mid"):
            d = r.randrange(2)
            if r.random() < 0.6:  # at a byte offset, log-uniform 1 B .. 300 kB
                off = int(round(pow(10, r.uniform(0, 5)))) + self.px.min_bytes
                self.dirs[d].cut_off = off
                self.trigger = f"at byte {off} of {'a->b' if d == 0 else 'b->a'}"
            else:
                self.trigger_time = r.uniform(0.2, 12.0)
                self.trigger_dir = d
                self.trigger = f"after {self.trigger_time:.1f}s ({'a->b' if d == 0 else 'b->a'})"
        for d in self.dirs:
            if stall:
                d.stall_gap = r.uniform(1.5, 10)
                d.next_stall = time.monotonic() + r.expovariate(1 / d.stall_gap)
            if frag:
                d.frag_gap = int(pow(10, r.uniform(1, 5)))
                d.frag_at = int(r.expovariate(1 / d.frag_gap))
                d.frag_len = r.randint(10, 3000)
        if "stall" in f and chaos and r.random() < self.px.hello_stall:
            # Stall one direction from its first byte: the Hello arrives late.
            d = self.dirs[r.randrange(2)]
            d.next_stall = time.monotonic()
            if not stall:
                d.stall_gap = 1e9
            stall = True
        self.nuisance = ("+stall" if stall else "") + ("+frag" if frag else "")

    def ev(self, msg):
        self.px.log(f"{self.name} {msg}")

    # -- life ------------------------------------------------------------------
    async def run(self):
        px, loop = self.px, asyncio.get_running_loop()
        px.conns[self.name] = self
        px.stats["connections"] += 1
        self.ev(f"accepted; plan {self.kind} {self.trigger}{self.nuisance}")
        px.stats[f"plan {self.kind}"] += 1
        try:
            if self.kind == "rst_accept":
                px.stats["fault rst_accept"] += 1
                rst_close(self.a)
                self.state = "closed"
                return
            port = px.target_port(self.link.dst)
            if not port:
                self.ev("target down: reset")
                rst_close(self.a)
                self.state = "closed"
                return
            b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            b.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(b, ("127.0.0.1", port)), 5)
            except (OSError, asyncio.TimeoutError) as e:
                self.ev(f"cannot reach target port {port}: {e!r}; reset")
                b.close()
                rst_close(self.a)
                self.state = "closed"
                return
            self.b = b
            for s in (self.a, self.b):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.kind == "blackhole":
                px.stats["fault blackhole(from accept)"] += 1
                await self.blackhole("from accept")
                return
            self.state = "open"
            self.pumps = [asyncio.ensure_future(self.pump(0)), asyncio.ensure_future(self.pump(1))]
            if getattr(self, "trigger_time", None) is not None:
                asyncio.ensure_future(self.timer())
            await asyncio.gather(*self.pumps, return_exceptions=True)
            if self.fired:
                return  # the fault handler owns the sockets now
            self.finish("both directions ended")
        except Exception as e:  # noqa: BLE001 - keep the proxy alive
            self.ev(f"proxy error {e!r}")
            self.finish("proxy error", rst=True)
        finally:
            if self.state == "closed":
                px.conns.pop(self.name, None)

    def finish(self, why, rst=False):
        if self.state == "closed":
            return
        for s in (self.a, self.b):
            if s is not None:
                rst_close(s) if rst else s.close()
        self.state = "closed"
        self.px.conns.pop(self.name, None)
        self.ev(f"closed ({why}); forwarded a->b {self.dirs[0].count} b->a {self.dirs[1].count}")

    async def timer(self):
        if await self.px.csleep(self.trigger_time):
            return  # chaos ended first: disarmed
        if self.state == "open" and not self.fired:
            self.fire(self.trigger_dir, f"timer {self.trigger_time:.1f}s")

    def fire(self, d, why):
        if self.fired or not self.px.chaos:
            return
        self.fired = True
        asyncio.ensure_future(self._fire(d, why))

    async def _fire(self, d, why):
        kind = self.kind
        px = self.px
        me = asyncio.current_task()
        if kind == "halfclose":
            p = self.pumps[d]
            p.cancel()
            await asyncio.gather(p, return_exceptions=True)
            dst = self.b if d == 0 else self.a
            px.stats["fault halfclose"] += 1
            self.state = f"halfclosed {'a->b' if d == 0 else 'b->a'}"
            self.ev(f"HALF-CLOSE {'a->b' if d == 0 else 'b->a'} ({why}; forwarded a->b "
                    f"{self.dirs[0].count} b->a {self.dirs[1].count}): FIN to "
                    f"{'b' if d == 0 else 'a'}, its peer's bytes are no longer read")
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            other = self.pumps[1 - d]
            # The other direction goes on until its EOF; then both close.
            t = time.monotonic()
            while not other.done():
                await asyncio.sleep(0.2)
                if self.rescued:
                    other.cancel()
                    await asyncio.gather(other, return_exceptions=True)
                    break
            self.ev(f"half-closed connection: other direction ended after {time.monotonic() - t:.1f}s")
            self.finish("after half-close")
            return
        for p in self.pumps:
            if p is not me:
                p.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)
        info = f"({why}; forwarded a->b {self.dirs[0].count} b->a {self.dirs[1].count})"
        if kind == "cut":
            px.stats["fault cut(FIN)"] += 1
            self.ev(f"CUT with FIN {info}")
            self.finish("cut")
        elif kind == "rst":
            px.stats["fault cut(RST)"] += 1
            self.ev(f"CUT with RST {info}")
            self.finish("rst", rst=True)
        elif kind == "blackhole_mid":
            px.stats["fault blackhole(mid-stream)"] += 1
            await self.blackhole(f"mid-stream {info}")

    async def blackhole(self, why):
        """Keep both ends open, forward nothing, read nothing; watch whether
        the sidecars give up (their socket goes CLOSE_WAIT / CLOSE)."""
        self.state = "blackhole"
        self.bh_since = now()
        self.ev(f"BLACK HOLE {why}")
        limit = self.px.bh_limit
        while True:
            for k, s in enumerate((self.a, self.b)):
                if self.gave_up[k] is None and tcp_state(s) in (7, 8, -1):
                    self.gave_up[k] = now() - self.bh_since
                    node = self.link.src if k == 0 else self.link.dst
                    killed = any(t >= self.bh_since for t in self.px.killed_at[node])
                    self.ev(f"black hole: side {'ab'[k]} ({self.side_name(k)}) closed its end after "
                            f"{self.gave_up[k]:.1f}s"
                            + (" (its sidecar was SIGKILLed meanwhile)" if killed else
                               " (the sidecar was being stopped by the script)" if self.px.stopping else
                               " (the sidecar gave up)"))
            if all(g is not None for g in self.gave_up):
                self.finish("both sidecars gave up on the black hole")
                return
            if self.rescued:
                self.finish("rescue: black hole cut", rst=True)
                return
            if self.px.chaos and limit and now() - self.bh_since > limit:
                self.px.stats["black holes the sidecars kept > limit (cut by proxy)"] += 1
                self.ev(f"black hole still open at {self.px.bh_limit}s "
                        f"(a: {TCP_STATES.get(tcp_state(self.a))}, b: {TCP_STATES.get(tcp_state(self.b))}); "
                        "the proxy cuts it (RST) to keep the chaos going")
                self.finish("black hole limit", rst=True)
                return
            await asyncio.sleep(0.5)

    def side_name(self, k):
        return f"node{self.link.src} dialer" if k == 0 else f"node{self.link.dst} acceptor"

    async def pump(self, d):
        loop, px = asyncio.get_running_loop(), self.px
        src, dst = (self.a, self.b) if d == 0 else (self.b, self.a)
        D = self.dirs[d]
        dn = "a->b" if d == 0 else "b->a"
        try:
            while True:
                limit = 65536
                if D.cut_off is not None and px.chaos:
                    limit = max(1, min(limit, D.cut_off - D.count))
                data = await loop.sock_recv(src, limit)
                if not data:
                    self.ev(f"{dn} EOF after {D.count} bytes; passed on")
                    D.eof = True
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                if px.chaos and D.next_stall is not None and time.monotonic() >= D.next_stall:
                    dur = self.rng.uniform(0.1, 5.0)
                    px.stats["fault stall"] += 1
                    self.ev(f"stall {dn} {dur:.2f}s at byte {D.count}")
                    await px.csleep(dur)
                    D.next_stall = time.monotonic() + self.rng.expovariate(1 / D.stall_gap)
                await self.deliver(D, dst, data)
                if D.cut_off is not None and D.count >= D.cut_off and px.chaos:
                    self.fire(d, f"offset {D.count} {dn}")
                    return
        except asyncio.CancelledError:
            raise
        except OSError as e:
            # A sidecar reset its end: pass the reset on.
            self.ev(f"{dn} error {e!r} after {D.count} bytes: resetting both")
            if not self.fired:
                self.fired = True  # nobody else touches the sockets
                other = self.pumps[1 - d]
                other.cancel()
                await asyncio.gather(other, return_exceptions=True)
                self.finish(f"{dn} {e.__class__.__name__}", rst=True)

    async def deliver(self, D, dst, data):
        loop, px = asyncio.get_running_loop(), self.px
        i = 0
        while i < len(data):
            pos = D.count + i
            if px.chaos and D.frag_at is not None and pos >= D.frag_at:
                if pos >= D.frag_at + D.frag_len:  # burst over: next one
                    D.frag_at = pos + int(self.rng.expovariate(1 / D.frag_gap)) + 1
                    D.frag_len = self.rng.randint(10, 3000)
                    continue
                if pos == D.frag_at:
                    px.stats["fault fragment burst"] += 1
                n = min(self.rng.randint(1, 7), len(data) - i, D.frag_at + D.frag_len - pos)
                await loop.sock_sendall(dst, data[i:i + n])
                i += n
                await asyncio.sleep(self.rng.uniform(0, 0.004))
                continue
            end = len(data)
            if px.chaos and D.frag_at is not None:
                end = min(end, i + (D.frag_at - pos))
            await loop.sock_sendall(dst, data[i:end])
            i = end
        D.count += len(data)


class Link:
    def __init__(self, px, src, dst):
        self.px, self.src, self.dst = px, src, dst
        self.name = f"n{src}->n{dst}"
        self.port = 0
        self.lsock = None
        self.accept_task = None
        self.nconn = 0
        self.reset_mode = False
        self.refusing = False

    def open(self):
        while True:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                s.close()
                time.sleep(0.05)
        s.listen(64)
        s.setblocking(False)
        self.lsock = s
        self.port = s.getsockname()[1]
        self.accept_task = asyncio.ensure_future(self.accept_loop())

    async def close_listener(self):
        self.accept_task.cancel()
        await asyncio.gather(self.accept_task, return_exceptions=True)
        self.lsock.close()

    async def accept_loop(self):
        loop = asyncio.get_running_loop()
        while True:
            c, _ = await loop.sock_accept(self.lsock)
            c.setblocking(False)
            if self.reset_mode and self.px.chaos:
                self.px.log(f"{self.name} refused (accept + RST)")
                rst_close(c)
                continue
            k = self.nconn
            self.nconn += 1
            asyncio.ensure_future(ProxyConn(self.px, self, k, c).run())

    async def refuser(self):
        r = random.Random(f"{self.px.seed}/{self.name}/refuse")
        while self.px.chaos:
            if await self.px.csleep(r.uniform(5, 30)):
                return
            dur = r.uniform(0.5, 8)
            if r.random() < 0.5:
                self.px.stats["fault refuse(listener closed)"] += 1
                self.px.log(f"{self.name} REFUSING (listener closed) for {dur:.1f}s")
                self.refusing = True
                await self.close_listener()
                await self.px.csleep(dur)
                self.open()
                self.refusing = False
            else:
                self.px.stats["fault refuse(accept+RST)"] += 1
                self.px.log(f"{self.name} REFUSING (accept + RST) for {dur:.1f}s")
                self.reset_mode = True
                await self.px.csleep(dur)
                self.reset_mode = False
            self.px.log(f"{self.name} accepting again")


class Proxy:
    def __init__(self, seed, faults, logpath, bh_limit, bh_mid_weight):
        self.seed, self.faults = seed, faults
        self.chaos = True
        self.calm = asyncio.Event()
        self.links = []
        self.conns = {}
        self.ports = {}  # node -> current listen port (None while down)
        self.killed_at = collections.defaultdict(list)  # node -> times it was SIGKILLed
        self.stats = collections.Counter()
        self.logf = open(logpath, "w")
        self.bh_limit = bh_limit
        self.bh_mid_weight = bh_mid_weight
        self.min_bytes = 0
        self.max_bh_mid = None
        self.hello_stall = 0.15
        self.stopping = False

    def log(self, msg):
        self.logf.write(f"{now():9.3f} {msg}\n")
        self.logf.flush()

    def target_port(self, node):
        return self.ports.get(node)

    async def csleep(self, d):
        """Sleeps d seconds; returns True at once if the chaos ends."""
        try:
            await asyncio.wait_for(self.calm.wait(), d)
            return True
        except asyncio.TimeoutError:
            return not self.chaos

    def add_link(self, src, dst):
        link = Link(self, src, dst)
        link.open()
        self.links.append(link)
        return link

    def start_chaos(self):
        if "refuse" in self.faults:
            for link in self.links:
                asyncio.ensure_future(link.refuser())

    def stop_chaos(self):
        self.chaos = False
        self.calm.set()
        self.log("=== CHAOS STOPPED: clean pass-through from now on ===")

    def stuck(self):
        return [c for c in self.conns.values() if c.state == "blackhole" or c.state.startswith("halfclosed")]

    def rescue(self):
        for c in self.stuck():
            c.rescued = True


# ----------------------------------------------------------------------------
# Processes
# ----------------------------------------------------------------------------
class Node:
    def __init__(self, i, d):
        self.i = i
        self.db = os.path.join(d, f"node{i}.db")
        self.log = os.path.join(d, f"node{i}.crsyncd.log")
        self.proc = None
        self.writer = None
        self.up = False
        self.starts = 0
        self.kills = 0
        self.unexpected_exits = []
        self.rss_max = 0
        self.rss = []
        self.peers = []


class Run:
    def __init__(self, a, d):
        self.a, self.d = a, d
        self.nodes = [Node(i, d) for i in range(a.nodes)]
        self.rng = random.Random(a.seed)
        self.problems = []
        self.procs = set()  # every live process we started

    def problem(self, msg):
        self.problems.append(msg)
        say("PROBLEM: " + msg)

    async def spawn(self, *args, **kw):
        p = await asyncio.create_subprocess_exec(*args, preexec_fn=_child_setup, **kw)
        self.procs.add(p)
        return p

    async def reap(self, p, timeout):
        try:
            rc = await asyncio.wait_for(p.wait(), timeout)
        except asyncio.TimeoutError:
            p.send_signal(signal.SIGKILL)
            rc = await p.wait()
            rc = f"timeout (killed, {rc})"
        self.procs.discard(p)
        return rc

    async def run_cmd(self, args, timeout=60):
        p = await self.spawn(*args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(p.communicate(), timeout)
        except asyncio.TimeoutError:
            p.send_signal(signal.SIGKILL)
            out, err = await p.communicate()
            self.procs.discard(p)
            return -9, out.decode(errors="replace"), err.decode(errors="replace") + "\n(timeout)"
        self.procs.discard(p)
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def start_sidecar(self, n):
        args = [CRSYNCD, "run", "--db", n.db, "--listen", "127.0.0.1:0"]
        for port in n.peers:
            args += ["--peer", f"127.0.0.1:{port}"]
        if not self.a.quiet_sidecars:
            args.append("-v")
        n.starts += 1
        with open(n.log, "ab") as f:
            f.write(f"=== chaos.py: start #{n.starts} at {now():.1f}s: {' '.join(args)}\n".encode())
        logf = open(n.log, "ab")
        p = await self.spawn(*args, stdout=asyncio.subprocess.PIPE, stderr=logf)
        logf.close()
        n.proc = p
        port = None
        try:
            async def handshake():
                nonlocal port
                while True:
                    line = await p.stdout.readline()
                    if not line:
                        return False
                    line = line.decode().strip()
                    if line.startswith("listening "):
                        port = int(line.split()[1])
                    if line == "ready":
                        return True
            ok = await asyncio.wait_for(handshake(), 10)
        except asyncio.TimeoutError:
            ok = False
        if not ok or not port:
            self.problem(f"node{n.i}'s sidecar did not start (start #{n.starts}); see {n.log}")
            p.send_signal(signal.SIGKILL)
            await self.reap(p, 10)
            n.proc = None
            return False
        asyncio.ensure_future(p.stdout.read())  # drain
        self.px.ports[n.i] = port
        n.up = True
        self.px.log(f"node{n.i} sidecar up (pid {p.pid}, port {port}, start #{n.starts})")
        return True

    async def kill_sidecar(self, n):
        n.up = False
        self.px.ports[n.i] = None
        if n.proc and n.proc.returncode is None:
            n.proc.send_signal(signal.SIGKILL)
        await self.reap(n.proc, 10)
        n.kills += 1
        self.px.killed_at[n.i].append(now())
        self.px.log(f"node{n.i} sidecar KILLED (SIGKILL)")
        with open(n.log, "ab") as f:
            f.write(f"=== chaos.py: SIGKILL at {now():.1f}s\n".encode())

    async def watch_sidecars(self):
        while True:
            for n in self.nodes:
                p = n.proc
                if n.up and p is not None and p.returncode is not None:
                    n.up = False
                    self.px.ports[n.i] = None
                    self.procs.discard(p)
                    n.unexpected_exits.append(p.returncode)
                    self.problem(f"node{n.i}'s sidecar exited on its own with status {p.returncode} "
                                 f"(see {n.log}); restarting it")
                    await asyncio.sleep(1)
                    await self.start_sidecar(n)
                if n.up and p is not None:
                    try:
                        with open(f"/proc/{p.pid}/status") as f:
                            m = re.search(r"VmRSS:\s+(\d+)", f.read())
                        if m:
                            kb = int(m.group(1))
                            n.rss_max = max(n.rss_max, kb)
                            n.rss.append((now(), kb))
                    except OSError:
                        pass
            await asyncio.sleep(0.5)

    async def killer(self, until):
        r = random.Random(f"{self.a.seed}/kills")
        ke = self.a.kill_every
        while True:
            t = time.monotonic() + r.uniform(ke / 2, 3 * ke / 2)
            while time.monotonic() < min(t, until):
                await asyncio.sleep(0.2)
            if time.monotonic() >= until:
                return
            pool = self.a.kill_nodes or list(range(len(self.nodes)))
            n = self.nodes[pool[r.randrange(len(pool))]]
            if not n.up:
                continue
            await self.kill_sidecar(n)
            pause = r.uniform(0.2, 4)
            say(f"SIGKILL node{n.i}'s sidecar; restart in {pause:.1f}s")
            await asyncio.sleep(pause)
            await self.start_sidecar(n)

    async def status(self, n):
        rc, out, err = await self.run_cmd([CRSYNCD, "status", "--db", n.db], 30)
        ver, peers, site = None, {}, None
        for line in out.splitlines():
            f = line.split()
            if line.startswith("db_version"):
                ver = int(f[1])
            elif line.startswith("site id"):
                site = f[2]
            elif f and re.fullmatch(r"[0-9a-fA-F]{32}", f[0]):
                peers[f[0].lower()] = f[1:]
        return ver, peers, site, out

    async def dumps(self):
        res = []
        for n in self.nodes:
            rc, out, err = await self.run_cmd([WRITER, "--db", n.db, "--dump"], 60)
            if rc != 0:
                self.problem(f"dump of node{n.i} failed: {err.strip()[:300]}")
            with open(os.path.join(self.d, f"node{n.i}.dump"), "w") as f:
                f.write(out)
            state = re.sub(r" \| X'[0-9a-fA-F]*' -?[0-9]+$", "", out, flags=re.M)
            res.append(state)
        return res

    async def progress(self):
        while True:
            await asyncio.sleep(15)
            vers = []
            for n in self.nodes:
                v, _, _, _ = await self.status(n)
                vers.append(v)
            conns = collections.Counter(c.state for c in self.px.conns.values())
            say(f"db_versions {vers}; proxy conns {dict(conns)}; rss MiB "
                f"{[round(n.rss[-1][1] / 1024, 1) if n.rss else None for n in self.nodes]}; "
                f"faults so far {sum(v for k, v in self.px.stats.items() if k.startswith('fault'))}")

    # -- the run -------------------------------------------------------------
    async def main(self):
        a = self.a
        self.px = Proxy(a.seed, a.faults, os.path.join(self.d, "proxy.log"), a.blackhole_limit,
                        a.blackhole_mid_weight)
        self.px.min_bytes = a.trigger_min_bytes
        self.px.max_bh_mid = a.max_blackholes_mid
        self.px.hello_stall = a.hello_stall
        edges = topology(a.topology, a.nodes, a.both_ways)
        say(f"chaos: {a.nodes} nodes, {a.topology} {edges} (i->j: node i dials node j through the proxy), "
            f"{a.seconds}s of writes at {a.rate} txn/s, seed {a.seed}, faults {','.join(a.faults)}, "
            f"kill-every {a.kill_every or 'off'}, dir {self.d}")
        for n in self.nodes:
            rc, out, err = await self.run_cmd([WRITER, "--db", n.db, "--init", "--seconds", "0"], 60)
            if rc != 0:
                self.problem(f"cannot create {n.db}: {err}")
                return
        for (i, j) in edges:
            link = self.px.add_link(i, j)
            self.nodes[i].peers.append(link.port)
        for n in self.nodes:
            if not await self.start_sidecar(n):
                return
        say("proxy links: " + ", ".join(f"{l.name} via :{l.port}" for l in self.px.links)
            + "; sidecar ports " + str(self.px.ports))
        bg = [asyncio.ensure_future(self.watch_sidecars()), asyncio.ensure_future(self.progress())]
        self.px.start_chaos()
        t_writers = time.monotonic()
        for n in self.nodes:
            wl = open(os.path.join(self.d, f"node{n.i}.writer.log"), "wb")
            n.writer = await self.spawn(WRITER, "--db", n.db, "--seconds", str(a.seconds), "--rate",
                                        str(a.rate), "--seed", str(a.seed * 100 + n.i),
                                        stdout=wl, stderr=wl)
            wl.close()
        if a.kill_every > 0:
            bg.append(asyncio.ensure_future(self.killer(t_writers + a.seconds - 2)))
        for n in self.nodes:
            rc = await self.reap(n.writer, a.seconds + 60)
            if rc != 0:
                self.problem(f"node{n.i}'s writer ended with {rc}; see node{n.i}.writer.log")
        if a.kill_every > 0:
            await asyncio.wait_for(bg.pop(), 30)  # ends by itself at `until`
        for n in self.nodes:
            with open(os.path.join(self.d, f"node{n.i}.writer.log")) as f:
                last = [l for l in f.read().splitlines() if l.startswith("crsync-writer ")]
            say(f"node{n.i} writer: {last[-1] if last else '?'}")
        self.px.stop_chaos()
        for n in self.nodes:
            if not n.up:
                await self.start_sidecar(n)
        t_stop = now()
        say(f"writers done, chaos stopped; waiting up to {a.settle}s for convergence")
        states = None
        converged_at = None
        while now() - t_stop < a.settle:
            states = await self.dumps()
            if all(s == states[0] for s in states):
                converged_at = now() - t_stop
                break
            await asyncio.sleep(1)
        self.converged = converged_at
        if converged_at is not None:
            say(f"CONVERGED {converged_at:.1f}s after the writers stopped "
                f"({states[0].count(chr(10))} dump lines)")
        else:
            self.problem(f"NOT converged within {a.settle}s")
            await self.explain(states)
            if a.rescue:
                stuck = self.px.stuck()
                say(f"rescue: cutting {len(stuck)} stuck proxy connection(s) "
                    f"{[c.name + ' ' + c.state for c in stuck]} and waiting {a.rescue}s more")
                self.px.rescue()
                t_r = now()
                while now() - t_r < a.rescue:
                    states = await self.dumps()
                    if all(s == states[0] for s in states):
                        say(f"after the rescue: CONVERGED in {now() - t_r:.1f}s -> the replicas were "
                            f"held apart by the stuck connection(s), not by a merge bug")
                        break
                    await asyncio.sleep(1)
                else:
                    say("after the rescue: still NOT converged")
                    await self.explain(states)
        # cursors at the end
        sites = {}
        for n in self.nodes:
            v, peers, site, out = await self.status(n)
            sites[n.i] = (v, peers, site)
            with open(os.path.join(self.d, f"node{n.i}.status"), "w") as f:
                f.write(out)
        for p in bg:
            p.cancel()
        await self.stop_all()
        # authoritative comparison with nothing running
        states = await self.dumps()
        self.identical = all(s == states[0] for s in states)
        if not self.identical:
            self.problem("dumps differ after stopping the sidecars")
            await self.explain(states, quiet=True)

    async def explain(self, states, quiet=False):
        if states:
            for i in range(1, len(states)):
                if states[i] != states[0]:
                    diff = list(difflib.unified_diff(states[0].splitlines(), states[i].splitlines(),
                                                     "node0", f"node{i}", n=0, lineterm=""))
                    say(f"node0 vs node{i}: {sum(1 for l in diff if l[:1] in '+-') - 2} differing lines; first:")
                    for l in diff[2:14]:
                        say("    " + l[:200])
        if quiet:
            return
        for n in self.nodes:
            v, peers, site, out = await self.status(n)
            say(f"node{n.i} status: site {site} db_version {v}; peers (recv, acked, backlog) "
                + "; ".join(f"{k[:8]} {' '.join(x)}" for k, x in peers.items()))
        for c in self.px.conns.values():
            age = now() - (c.bh_since or c.since)
            say(f"open proxy connection {c.name}: state {c.state} for {age:.1f}s; plan {c.kind} {c.trigger}; "
                f"a: {TCP_STATES.get(tcp_state(c.a), tcp_state(c.a))}, "
                f"b: {TCP_STATES.get(tcp_state(c.b), tcp_state(c.b)) if c.b else '-'}")

    async def stop_all(self):
        self.unclean = []
        self.px.stopping = True
        for n in self.nodes:
            p = n.proc
            if p is None:
                continue
            if p.returncode is not None:
                self.problem(f"node{n.i}'s sidecar was not alive at the end (status {p.returncode})")
                self.procs.discard(p)
                continue
            p.send_signal(signal.SIGTERM)
            rc = await self.reap(p, 15)
            n.up = False
            if rc != 0:
                self.unclean.append(n.i)
                self.problem(f"node{n.i}'s sidecar did not stop cleanly on SIGTERM: {rc}")

    def scan_logs(self):
        expected = [r"no hello within", r"cannot reach", r"connection \d+ \(.*\) ended"]
        crash = re.compile(r"Assertion|assert|abort|terminate called|Segmentation|AddressSanitizer|"
                           r"runtime error|panic|core dumped|stack trace|SIGSEGV", re.I)
        report = []
        for n in self.nodes:
            kinds = collections.Counter()
            crashes = []
            with open(n.log, errors="replace") as f:
                for line in f:
                    line = line.rstrip("\n")
                    if line.startswith("=== chaos.py"):
                        continue
                    m = re.match(r"\S+Z crsyncd (\w+): (.*)", line)
                    if not m:
                        crashes.append(line)
                        continue
                    level, msg = m.groups()
                    if crash.search(msg):
                        crashes.append(line)
                    if level in ("error", "warning"):
                        key = re.sub(r"\d+", "N", msg)
                        key = re.sub(r"[0-9a-f]{32}", "SITE", key)
                        kinds[(level, key[:160])] += 1
            report.append((n, kinds, crashes))
        return report


def topology(t, n, both):
    if t == "pair":
        e = [(1, 0)]
    elif t == "line":
        e = [(i, i - 1) for i in range(1, n)]
    elif t == "hub":
        e = [(i, 0) for i in range(1, n)]
    else:
        e = [(i, j) for i in range(n) for j in range(i)]
    if both:
        e += [(j, i) for (i, j) in e]
    return e


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--topology", choices=["pair", "line", "hub", "mesh"], default="mesh")
    ap.add_argument("--seconds", type=int, default=60, help="how long the writers write")
    ap.add_argument("--rate", type=float, default=10, help="txn/s per writer")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", metavar="DIR", help="put the files in DIR and keep them")
    ap.add_argument("--settle", type=int, default=120, help="max seconds to wait for convergence")
    ap.add_argument("--rescue", type=int, default=60,
                    help="if not converged: cut stuck proxy connections and wait this long (0 = no)")
    ap.add_argument("--kill-every", type=float, default=0, help="mean seconds between sidecar SIGKILLs (0 = none)")
    ap.add_argument("--faults", default=",".join(ALL_FAULTS),
                    help=f"comma list from {','.join(ALL_FAULTS)} (default all)")
    ap.add_argument("--blackhole-limit", type=float, default=30,
                    help="while chaos lasts, a black hole the sidecars keep this long is cut by the proxy (0 = never)")
    ap.add_argument("--blackhole-mid-weight", type=float, default=4,
                    help="relative weight of mid-stream black holes among per-connection plans (clean is 10, cut 20)")
    ap.add_argument("--kill-nodes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="comma list of the nodes the killer may pick (default all)")
    ap.add_argument("--trigger-min-bytes", type=int, default=0,
                    help="add this to every byte-offset trigger (e.g. 400: faults only after the Hellos)")
    ap.add_argument("--max-blackholes-mid", type=int, default=None,
                    help="at most this many connections get a mid-stream black-hole plan")
    ap.add_argument("--hello-stall", type=float, default=0.15,
                    help="probability that a connection stalls one direction from its first byte (with 'stall')")
    ap.add_argument("--both-ways", action="store_true", help="each linked pair dials both ways (2 connections)")
    ap.add_argument("--quiet-sidecars", action="store_true", help="do not run crsyncd with -v")
    a = ap.parse_args()
    for binary in (CRSYNCD, WRITER):
        if not os.access(binary, os.X_OK):
            ap.error(f"{binary} is not there: build first (meson setup build && ninja -C build), "
                     "or set BUILD_DIR, or CRSYNCD and CRSYNC_WRITER")
    a.faults = [f for f in a.faults.split(",") if f]
    if (not 2 <= a.nodes <= 4) or any(f not in ALL_FAULTS for f in a.faults) or a.seconds < 1:
        ap.error("2..4 nodes, faults from " + ",".join(ALL_FAULTS))
    if a.topology == "pair":
        a.nodes = 2
    for b in (CRSYNCD, WRITER):
        if not os.access(b, os.X_OK):
            ap.error(f"{b} missing")
    if a.keep:
        d = os.path.abspath(a.keep)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.startswith("node") or f in ("proxy.log", "report.txt"):
                os.remove(os.path.join(d, f))
    else:
        d = tempfile.mkdtemp(prefix="crsync-chaos-")
    OUT = open(os.path.join(d, "report.txt"), "w")
    r = Run(a, d)
    r.converged = None
    r.identical = False
    r.unclean = []
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    deadline = a.seconds + a.settle + a.rescue + 240
    main_task = loop.create_task(r.main())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)
    try:
        loop.run_until_complete(asyncio.wait_for(main_task, deadline))
    except (asyncio.TimeoutError, asyncio.CancelledError) as e:
        r.problem(f"run aborted ({e.__class__.__name__}): cleaning up")
    finally:
        # Every process we started, by pid, and only ours.
        for p in list(r.procs):
            if p.returncode is None:
                try:
                    p.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in list(r.procs):
            try:
                loop.run_until_complete(asyncio.wait_for(p.wait(), 10))
            except Exception:  # noqa: BLE001
                pass

    # ---- report ----
    px = r.px if hasattr(r, "px") else None
    say("=== report ===")
    if px:
        st = px.stats
        say(f"proxied connections {st['connections']}; plans: "
            + ", ".join(f"{k[5:]} {v}" for k, v in sorted(st.items()) if k.startswith("plan ")))
        say("faults fired: " + ", ".join(f"{k[6:]} {v}" for k, v in sorted(st.items()) if k.startswith("fault ")))
        rest = {k: v for k, v in st.items() if not k.startswith(("plan ", "fault ")) and k != "connections"}
        if rest:
            say(f"also: {rest}")
        bh = []
        with open(os.path.join(d, "proxy.log")) as f:
            for line in f:
                if "black hole" in line and ("closed its end" in line or "still open" in line):
                    bh.append(line.strip())
        if bh:
            say(f"black-hole outcomes ({len(bh)} lines in proxy.log), e.g.:")
            for l in bh[:8]:
                say("    " + l)
    for n in r.nodes:
        say(f"node{n.i}: sidecar starts {n.starts}, SIGKILLs {n.kills}, unexpected exits {n.unexpected_exits}, "
            f"max RSS {n.rss_max / 1024:.1f} MiB"
            + (f" (first {n.rss[0][1] / 1024:.1f}, last {n.rss[-1][1] / 1024:.1f})" if n.rss else ""))
    crashed = False
    # No database is restored or copied here: these alarms are false ones.
    suspicious = [(r"restored from a backup|restore epoch|lost versions", "spurious restore detection"),
                  (r"already connected to the node refusing it", "peer refused as a duplicate site (stale connection kept)"),
                  (r"bad frame|checksum|internal error|cannot encode|not reading", "frame/internal error (no corruption is injected)")]
    for n, kinds, crashes in r.scan_logs():
        if crashes:
            crashed = True
            r.problem(f"node{n.i}'s log has {len(crashes)} non-log / crash-like lines, e.g. {crashes[:3]}")
        for pat, what in suspicious:
            c = sum(v for (lvl, k), v in kinds.items() if re.search(pat, k))
            if not c:
                continue
            if "duplicate" in what and any(m.kills for m in r.nodes):
                # A node killed while its old connection hung is refused
                # until that connection's silence ends it (about 31 s).
                say(f"note: node{n.i}: {c} duplicate-site refusal(s) after a kill (expected "
                    f"while a killed node's old connection is not yet found dead)")
                continue
            r.problem(f"node{n.i}: {what}: {c} error/warning line(s) in {n.log}")
        for (lvl, k), c in kinds.most_common(10):
            say(f"node{n.i} log {lvl} x{c}: {k}")
    if r.converged is not None and r.identical:
        say(f"RESULT: converged {r.converged:.1f}s after the writers stopped; identical after stop")
    else:
        say("RESULT: NOT converged" + ("" if r.identical else " (dumps differ at the end)"))
    ok = r.converged is not None and r.identical and not r.problems and not crashed
    say(f"verdict: {'PASS' if ok else 'FAIL'}; files in {d}")
    if ok and not a.keep:
        OUT.close()
        shutil.rmtree(d, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
