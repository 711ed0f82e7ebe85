"""Scraping under politeness: N sources on H loopback hosts, R requests/s per host, two real workers,
every run published at once; and the same fetches by a plain HTTP client beside the gated one.

Method. H threaded HTTP servers, one per loopback address 127.0.2.1.. (port 80 when it can be
bound, else one free port allowed on every source), in a process of their own at nice -10 so
that their clocks are not held up by the load they measure; they are named host01.test.. by
OUTBOUND_HOSTS (the gate still classifies the answer; OUTBOUND_ALLOWED_NETWORKS=127.0.0.0/8 lets
it reach loopback). Each serves small distinct HTML pages (about 480 bytes) and a 404
robots.txt (RFC 9309: no rules), and notes the arrival (time.time()) of every request once its
headers are read. N sources, N/H per host, saved with `source_save` (each owns its
PeriodicTask) in a scratch PostgreSQL database migrated for the run; a private Redis
(wiring.embedded_redis) is the broker and the workers' shared store of host limits and
robots.txt. SCRAPER_HOST_INTERVAL_SECONDS = 1/R, SCRAPER_HOST_CONCURRENCY 2.

Two real workers, `celery -A scheduler worker -P prefork -c 4` each, as the Procfile starts them
(INFO logging, every queue) but without mingle and gossip (start-up and cluster chatter only).
Why 4: an execution mostly waits on round trips (PostgreSQL, Redis, the site, each well under a
millisecond on loopback but many per execution), so two processes per core were meant to keep
this 2-core machine busy; `--concurrency` changes it (see bench/README.md for 2 and 8). Then
every run is published at once with `runs_send_now` (a manual ledger run per schedule, as "Run
now" makes them, in one Redis pipeline), and the bench waits until every run is finished.

Figures:
- achieved rate: the requests the sites saw from the workers (pages and the robots.txt each
  host's first fetch reads, which takes the host's turn like a page) from the first to the last,
  as sum over hosts of (requests - 1) / span, so that a perfect run (each host asked every 1/R s
  from one start) gives H x R exactly; its ratio to that polite maximum;
- burst: per host, the most requests in any window [t, t + 1 s) against the limit (R, rounded
  up), and the smallest gap between two requests to one host against 1/R; the goal allows a gap
  JITTER_S under 1/R for the send's own jitter. Beside it, the gate's own decisions, the moment
  from which it lets each request go (Redis's clock): the TURN script sets a host's `:next` key
  to that moment + one interval (on a go, or when it hands out a slot), and a keyspace
  notification of our Redis says so. Matching the n-th decision to the n-th arrival per host
  gives how far the arrivals run behind the gate's schedule: each request's own delay from its
  go to the site while requests keep their order (a go-now gate), which says whether a short gap
  is the gate's or the sender's; under a slot queue a waiter back late arrives out of order;
- worker CPU per fetch: user + system time of every worker process (main and pool children,
  psutil) from just before publishing to the last run finished, over the pages fetched: every
  execution counts, the deferred ones and the ledger's and result backend's writes included;
  the ledger's runs tell how many executions there were (1 + the deferrals of each);
- peak RSS: VmHWM of each worker process; the goal is on the largest single process. The table
  also shows each worker's tree summed (VmHWM summed counts pages shared since the fork once per
  process) and the peak of its PSS (shared pages split between the processes);
- the cost of the gate: the workers stopped, in a child process started afresh (no Django), the
  same page GETs in the order the sites saw them, one after another: a plain `httpx2.Client`
  (its default pool; the name mapped by an address in the URL and the name in the Host header)
  beside `scraping.fetcher.fetch()` on the gated client `outbound_client(resolver=..., allowed=
  loopback)`, after an untimed warm-up of each, over several rounds in a rotating order; CPU time
  (time.process_time) per fetch, medians. A third row, the gated client with the plain client's
  pool limits, tells the gate's checks from its smaller keep-alive pool. The workers' CPU per
  fetch is shown beside the plain GET's too (everything a scheduled fetch does, against the GET).

Goals, printed PASS/FAIL: at least 0.9 of the polite maximum; no host ever over its limit (at
most R in any 1 s window, no gap under 1/R - JITTER_S); peak worker RSS under 200 MB; the gated
fetch under 1.2x the plain client's CPU per fetch. Notes under the table: the ledger's runs by
status, deferrals per run, where the time went, the decision-to-arrival delays, and the CPU of
Redis, of our PostgreSQL backends, of the bench, its sites and of the whole machine (shared).
`--rate 100` takes the hosts' limit out of the way and measures what the workers can fetch.

    .venv/bin/python bench/bench_scraping.py [--sources 1000] [--hosts 20] [--rate 2]
        [--workers 2] [--concurrency 4] [--rounds 5] [--quick] [--dump seen.json]
        [--postgres-url postgres://postgres@127.0.0.1:5432/postgres] [--workdir /tmp/...]
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path

from worker_processes import Worker, machine_busy, process_cpu, workers_start

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

PYTHON = sys.executable
RUN_DB = "bench_scraping"
SOURCE_PREFIX = "bench"
GOAL_RATE_RATIO, GOAL_RSS_MB, GOAL_GATE_RATIO = 0.9, 200, 1.2
JITTER_S = 0.010  # a gap this much under 1/R is counted as an overrun, not as measurement jitter
SAMPLE_EVERY = 0.25
PSS_EVERY = 20
USER_AGENT = "scheduled-maintenance/0.1 (+mailto:bench@localhost)"
# Variables of ours that a child must not inherit from whoever started the bench.
CONFIG_VARIABLES = (
    "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DATA_DIR", "WORKER_CONCURRENCY", "OUTBOUND_ALLOWED_NETWORKS",
    "OUTBOUND_HOSTS", "SCRAPER_CONTACT", "SCRAPER_HOST_INTERVAL_SECONDS", "SCRAPER_HOST_CONCURRENCY",
    "DJANGO_SETTINGS_MODULE", "LOG_LEVEL",
)


# --- the sites -----------------------------------------------------------------------------------

def page_body(host: str, index: int) -> bytes:
    rows = "".join(f"<li>Item {index}.{n}: {(index * 37 + n * 11) % 97} EUR</li>" for n in range(12))
    return (f"<!doctype html><html><head><title>{host} page {index}</title></head><body>"
            f"<h1>Prices on {host}, page {index}</h1><ul>{rows}</ul>"
            f"<p>Updated daily. Page {index} of the catalogue.</p></body></html>").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # As web servers do (nginx's tcp_nodelay): without it the body waits for the client's
    # delayed ACK of the headers on a kept-alive connection, which is the test server's doing.
    disable_nagle_algorithm = True

    def do_GET(self):
        self.server.arrivals.append((time.time(), self.server.phase[0], self.path))
        body = self.server.pages.get(self.path)
        status = 200 if body is not None else 404
        body = body if body is not None else b"not here"
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8" if status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Site(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, name: str, address: str, port: int, pages: dict[str, bytes], phase: list[str]) -> None:
        super().__init__((address, port), Handler)
        self.name, self.address, self.pages, self.phase = name, address, pages, phase
        self.arrivals: list[tuple[float, str, str]] = []  # (time.time(), phase, path)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def handle_error(self, request, client_address) -> None:
        pass


def decisions_watch(redis_url: str, interval_ms: int, phase: list[str], decisions: list) -> None:
    """When the gate lets each request to a host go, in Redis's clock. The TURN script sets the
    host's `...:next` key to that moment + one interval: the GCRA script of commit 39c1345 when a
    request may go now, a slot queue when it hands a request its slot (now or later). A keyspace
    notification says the key was set; its value minus the interval is the moment."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.config_set("notify-keyspace-events", "K$")
    prefix = "__keyspace@0__:"
    subscriber = client.pubsub(ignore_subscribe_messages=True)
    subscriber.psubscribe(f"{prefix}scraping:host:*:next")
    last: dict[str, int] = {}
    for message in subscriber.listen():
        if message["data"] != b"set":
            continue
        key = message["channel"].decode()[len(prefix):]
        value = client.get(key)
        host = key.split(":")[2]
        if value is None or last.get(host) == int(value):
            continue
        last[host] = int(value)
        decisions.append(((int(value) - interval_ms) / 1000, phase[0], host))


def sites_child(spec_path: Path) -> None:
    """The sites, in a process of their own at a higher priority than the workers (when allowed),
    so that their arrival times are not held up by the load they measure. Commands on stdin:
    `phase NAME`, `dump PATH`; each answered `ok` on stdout."""
    spec = json.loads(spec_path.read_text())
    try:
        os.nice(-10)
        priority = "nice -10"
    except PermissionError:
        priority = "nice 0 (not allowed to raise it)"
    phase = ["idle"]
    sites = []
    port = 80
    for name, address in spec["hosts"]:
        pages = {f"/page-{i + 1:03d}": page_body(name, i + 1) for i in range(spec["per_host"])}
        try:
            sites.append(Site(name, address, port, pages, phase))
        except PermissionError:
            if sites:
                raise
            sites.append(Site(name, address, 0, pages, phase))
            port = sites[0].server_address[1]
    decisions: list = []
    threading.Thread(target=decisions_watch, args=(spec["redis_url"], spec["interval_ms"], phase, decisions),
                     daemon=True).start()
    print(json.dumps({"port": port, "priority": priority}), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "phase":
            phase[0] = argument
        elif command == "dump":
            Path(argument).write_text(json.dumps({
                "arrivals": {site.name: site.arrivals for site in sites}, "decisions": decisions}))
        print("ok", flush=True)


class Sites:
    """The sites' process, from the bench's side."""

    def __init__(self, hosts: int, per_host: int, redis_url: str, interval: float, workdir: Path) -> None:
        self.names = [(f"host{h + 1:02d}.test", f"127.0.2.{h + 1}") for h in range(hosts)]
        self.per_host, self.workdir = per_host, workdir
        spec = workdir / "sites.json"
        spec.write_text(json.dumps({"hosts": self.names, "per_host": per_host, "redis_url": redis_url,
                                    "interval_ms": round(interval * 1000)}))
        env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
        self.process = subprocess.Popen([PYTHON, __file__, "--sites-child", str(spec)], cwd=PROJECT, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started = json.loads(self.process.stdout.readline())
        self.port, self.priority = started["port"], started["priority"]

    def _command(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "ok":
            sys.exit(f"the sites' process did not answer {line!r}")

    def phase(self, name: str) -> None:
        self._command(f"phase {name}")

    def seen(self) -> dict:
        path = self.workdir / "seen.json"
        self._command(f"dump {path}")
        return json.loads(path.read_text())

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the database, the broker, the environment --------------------------------------------------

def child_env(*, database_url: str, redis_url: str, data_dir: Path, sites: Sites, rate: float,
              host_concurrency: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    env.update(
        DATABASE_URL=database_url, REDIS_URL=redis_url, DATA_DIR=str(data_dir), SECRET_KEY="bench-only-key-" + "x" * 40,
        DJANGO_SETTINGS_MODULE="scheduler.settings", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1",
        OUTBOUND_HOSTS=",".join(f"{name}={address}" for name, address in sites.names),
        OUTBOUND_ALLOWED_NETWORKS="127.0.0.0/8", SCRAPER_HOST_INTERVAL_SECONDS=repr(1 / rate),
        SCRAPER_HOST_CONCURRENCY=str(host_concurrency), SCRAPER_CONTACT="bench@localhost",
    )
    return env


# --- worker processes ----------------------------------------------------------------------------

class Sampler(threading.Thread):
    """Each worker tree's memory every SAMPLE_EVERY s; PSS every PSS_EVERY samples, since it reads
    every process's smaps (memory only grows in these processes, and it is read once more at the end)."""

    def __init__(self, workers: list[Worker]) -> None:
        super().__init__(daemon=True)
        self.workers = workers
        self.stopping = threading.Event()

    def run(self) -> None:
        beat = 0
        while not self.stopping.wait(SAMPLE_EVERY):
            for worker in self.workers:
                worker.sample_memory(with_pss=beat % PSS_EVERY == 0)
            beat += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


# --- the measured run -----------------------------------------------------------------------------

@dataclass
class Run:
    published_at: float = 0.0  # time.time() (the sites' clock), when runs_send_now was called
    publish_s: float = 0.0
    finished_at: float = 0.0  # time.time(), when the ledger had every run finished
    timed_out: bool = False
    statuses: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    deferrals: list[int] = field(default_factory=list)
    fetch_records: Counter = field(default_factory=Counter)
    worker_cpu: float = 0.0
    redis_cpu: float = 0.0
    postgres_cpu: float = 0.0
    machine_cpu: float = 0.0
    bench_cpu: float = 0.0  # this process: publishing, polling the ledger, sampling the workers
    sites_cpu: float = 0.0
    errors: list[str] = field(default_factory=list)


def sources_make(sites: Sites) -> None:
    from scraping.models import Source
    from scraping.sources import source_save

    port = sites.port
    for index in range(sites.per_host):
        for name, _ in sites.names:
            where = name if port == 80 else f"{name}:{port}"
            source_save(source=Source(name=f"{SOURCE_PREFIX} {name} {index + 1:03d}",
                                      url=f"http://{where}/page-{index + 1:03d}", every_minutes=60, enabled=True,
                                      allowed_port=None if port == 80 else port))


def measured_run(workers: list[Worker], broker_pid: int, sites: Sites, timeout: float) -> Run:
    from django.db import connection
    from django_celery_beat.models import PeriodicTask

    from scheduler.models import ScheduleRun
    from scheduler.publish import runs_send_now
    from scraping.models import FetchRecord
    from shared.claims import holder_name
    from wiring.celery import app

    run = Run()
    tasks = list(PeriodicTask.objects.filter(name__startswith=f"Scrape: {SOURCE_PREFIX} ").order_by("id"))
    sampler = Sampler(workers)
    for worker in workers:
        worker.cpu_start = worker.cpu()
    redis_before, machine_before, sites_before = process_cpu(broker_pid), machine_busy(), sites.cpu()
    bench_before = process_cpu(os.getpid())
    sites.phase("workers")
    sampler.start()
    run.published_at = time.time()
    dispatches = runs_send_now(tasks=tasks, node=holder_name("bench"), app=app)
    run.publish_s = time.time() - run.published_at
    ids = [d.run_id for d in dispatches]
    pending = ScheduleRun.objects.filter(id__in=ids).exclude(status__in=ScheduleRun.FINISHED)
    deadline = run.published_at + timeout
    while pending.exists():
        if time.time() > deadline:
            run.timed_out = True
            break
        if any(worker.process.poll() is not None for worker in workers):
            run.errors.append("a worker exited during the run")
            break
        time.sleep(0.2)
    run.finished_at = time.time()
    for worker in workers:
        worker.cpu_end = worker.cpu()
        worker.read_peaks()
        worker.sample_memory(with_pss=True)
    run.redis_cpu = process_cpu(broker_pid) - redis_before
    run.machine_cpu = machine_busy() - machine_before
    run.bench_cpu = process_cpu(os.getpid()) - bench_before
    run.sites_cpu = sites.cpu() - sites_before
    sampler.stop()
    sites.phase("idle")
    run.worker_cpu = sum(w.cpu_end - w.cpu_start for w in workers)
    with connection.cursor() as cursor:
        # Our database's backends (the workers' pool processes keep theirs: CONN_MAX_AGE), all of
        # them born in this run but the bench's own, which did the publishing.
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        run.postgres_cpu = sum(process_cpu(pid) for (pid,) in cursor.fetchall())
    for status, output in ScheduleRun.objects.filter(id__in=ids).values_list("status", "output"):
        run.statuses[status] += 1
        output = output if isinstance(output, dict) else {}
        run.outcomes[output.get("outcome", "?")] += 1
        run.deferrals.append(int(output.get("deferred") or 0))
    run.fetch_records = Counter(FetchRecord.objects.values_list("outcome", flat=True))
    return run


# --- what the servers saw ---------------------------------------------------------------------

@dataclass
class Seen:
    requests: int = 0
    pages: int = 0
    robots: int = 0
    first: float = 0.0
    last: float = 0.0
    rate: float = 0.0  # sum over hosts of (requests - 1) / (last - first)
    burst: int = 0  # most requests to one host in any [t, t + 1 s)
    burst_host: str = "-"
    min_gap: float = math.inf
    min_gap_host: str = "-"
    gaps_under: int = 0  # gaps under 1/R
    gaps_over_jitter: int = 0  # gaps under 1/R - JITTER_S
    gaps: list[float] = field(default_factory=list)
    per_host_span: list[float] = field(default_factory=list)
    order: list[tuple[str, str]] = field(default_factory=list)  # (host, path) of the pages in arrival order
    # The gate's decisions (Redis's clock; decisions_watch): the moments from which it let each
    # request go, how many, their smallest gap per host, and the delay from each to its request
    # reaching the site (n-th decision to n-th arrival per host).
    decisions: int = 0
    decision_burst: int = 0
    decision_min_gap: float = math.inf
    delays: list[float] = field(default_factory=list)
    unmatched_hosts: int = 0


def window_burst(times: list[float], window: float = 1.0) -> int:
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else math.nan


def seen_by_servers(dump: dict, interval: float) -> Seen:
    per_host = {name: sorted((at, path) for at, phase, path in arrivals if phase == "workers")
                for name, arrivals in dump["arrivals"].items()}
    everything = sorted((at, name, path) for name, seen in per_host.items() for at, path in seen)
    if not everything:
        return Seen()
    seen = Seen(requests=len(everything), first=everything[0][0], last=everything[-1][0])
    seen.robots = sum(1 for _, _, path in everything if path == "/robots.txt")
    seen.pages = seen.requests - seen.robots
    intervals = sum(max(0, len(arrivals) - 1) for arrivals in per_host.values())
    seen.rate = intervals / (seen.last - seen.first) if seen.last > seen.first else 0.0
    decided = defaultdict(list)
    for at, phase, host in dump["decisions"]:
        if phase == "workers":
            decided[host].append(at)
    for name, arrivals in per_host.items():
        times = [at for at, _ in arrivals]
        burst = window_burst(times)
        if burst > seen.burst:
            seen.burst, seen.burst_host = burst, name
        for a, b in pairwise(times):
            seen.gaps.append(b - a)
            if b - a < seen.min_gap:
                seen.min_gap, seen.min_gap_host = b - a, name
        decisions = sorted(decided.get(name, []))
        seen.decisions += len(decisions)
        seen.decision_burst = max(seen.decision_burst, window_burst(decisions))
        seen.decision_min_gap = min([seen.decision_min_gap] + [b - a for a, b in pairwise(decisions)])
        if len(decisions) == len(times):
            seen.delays.extend(at - decision for at, decision in zip(times, decisions, strict=True))
        else:
            seen.unmatched_hosts += 1
    seen.gaps.sort()
    seen.gaps_under = sum(1 for g in seen.gaps if g < interval)
    seen.gaps_over_jitter = sum(1 for g in seen.gaps if g < interval - JITTER_S)
    seen.per_host_span = sorted(arrivals[-1][0] - arrivals[0][0] for arrivals in per_host.values() if arrivals)
    seen.order = [(name, path) for _, name, path in everything if path != "/robots.txt"]
    return seen


# --- the baseline: plain client beside the gated fetch, in a fresh child ------------------------

def baseline_child(spec_path: Path) -> None:
    """Run in a fresh process: the page GETs of `spec` by each client, CPU and wall per fetch."""
    from ipaddress import ip_address

    import httpx2

    from scraping.addresses import allowed_networks
    from scraping.fetcher import Outcome, fetch, outbound_client
    from scraping.gate import POOL_LIMITS, GatedTransport

    spec = json.loads(spec_path.read_text())
    addresses = spec["addresses"]
    port, rounds = spec["port"], spec["rounds"]
    loopback = allowed_networks(["127.0.0.0/8"])
    ports = () if port == 80 else (port,)
    netloc = (lambda host: host) if port == 80 else (lambda host: f"{host}:{port}")
    order = [(host, path) for host, path in spec["order"]]
    by_name = [(f"http://{netloc(host)}{path}") for host, path in order]
    by_address = [(f"http://{netloc(addresses[host])}{path}", netloc(host)) for host, path in order]

    def resolver(host: str, port: int, timeout):
        return [ip_address(addresses[host])]

    def plain_pass(client) -> int:
        ok = 0
        for url, host in by_address:
            response = client.get(url, headers={"Host": host, "User-Agent": USER_AGENT})
            ok += response.status_code == 200 and bool(response.content)
        return ok

    def gated_pass(client) -> int:
        ok = 0
        for url in by_name:
            result = fetch(url, client=client, user_agent=USER_AGENT, ports=ports, allowed=loopback)
            ok += result.outcome == Outcome.FETCHED
        return ok

    plain = httpx2.Client(trust_env=False, follow_redirects=False)
    gated = outbound_client(resolver=resolver, allowed=loopback)
    # The plain client's own pool limits (httpx2's defaults), on the gated transport.
    plain_limits = plain._transport._pool._max_keepalive_connections, plain._transport._pool._max_connections
    wide = httpx2.Client(transport=GatedTransport(resolver=resolver, allowed=loopback, limits=httpx2.Limits(
        max_connections=plain_limits[1], max_keepalive_connections=plain_limits[0])),
                         trust_env=False, follow_redirects=False)
    contenders = {"plain": (plain_pass, plain), "gated": (gated_pass, gated), "gated_wide_pool": (gated_pass, wide)}
    figures = {name: {"cpu": [], "wall": [], "ok": 0} for name in contenders}
    for one_pass, client in contenders.values():
        one_pass(client)  # warm-up: connections opened, code paths warm
    names = list(contenders)
    for round_ in range(rounds):
        # Each round in another order, so that no client always runs right after the same other.
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            one_pass, client = contenders[name]
            cpu, wall = time.process_time(), time.perf_counter()
            ok = one_pass(client)
            figures[name]["cpu"].append((time.process_time() - cpu) / len(order))
            figures[name]["wall"].append((time.perf_counter() - wall) / len(order))
            figures[name]["ok"] = ok
    figures["limits"] = {"gated_keepalive": POOL_LIMITS.max_keepalive_connections,
                         "plain_keepalive": plain_limits[0]}
    print(json.dumps(figures))


def baseline_run(sites: Sites, order: list[tuple[str, str]], rounds: int, workdir: Path) -> dict:
    spec = workdir / "baseline.json"
    spec.write_text(json.dumps({"addresses": dict(sites.names), "port": sites.port, "rounds": rounds,
                                "order": order}))
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    sites.phase("baseline")
    try:
        done = subprocess.run([PYTHON, __file__, "--baseline-child", str(spec)], cwd=PROJECT, env=env,
                              capture_output=True, text=True, check=False)
    finally:
        sites.phase("idle")
    if done.returncode != 0:
        sys.exit(f"the baseline process failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report -------------------------------------------------------------------------------------

def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def report(args, sites: Sites, workers: list[Worker], run: Run, seen: Seen, base: dict) -> None:
    interval = 1 / args.rate
    polite = args.hosts * args.rate
    limit = math.ceil(args.rate)
    mb = 2**20
    pages_fetched = run.fetch_records.get("fetched", 0) + run.fetch_records.get("not_modified", 0)
    worker_cpu_per_fetch = run.worker_cpu / max(1, pages_fetched)
    clients = ("plain", "gated", "gated_wide_pool")
    med = {name: statistics.median(base[name]["cpu"]) for name in clients}
    wall = {name: statistics.median(base[name]["wall"]) for name in clients}
    largest = max(((w.name, pid, peak) for w in workers for pid, peak in w.peaks.items()), key=lambda x: x[2])
    root_pids = {w.process.pid for w in workers}
    rate_ok = seen.rate >= GOAL_RATE_RATIO * polite and not run.timed_out
    burst_ok = seen.burst <= limit and seen.gaps_over_jitter == 0
    rss_ok = largest[2] < GOAL_RSS_MB * mb
    gate_ratio = med["gated"] / med["plain"]

    print(f"\n== {args.sources:,} sources on {args.hosts} hosts, {args.rate:g} requests/s per host "
          f"(interval {interval:.3f} s), {args.workers} workers x {args.pool} -c {args.concurrency}, PostgreSQL")
    rows = [
        ("figure", "ours", "baseline / goal", "ratio", ""),
        ("achieved request rate, req/s", f"{seen.rate:.2f}", f"{polite:g} polite max; goal >= {GOAL_RATE_RATIO}x",
         f"{seen.rate / polite:.3f}", verdict(rate_ok)),
        ("most requests to one host in any 1 s window", f"{seen.burst} ({seen.burst_host})",
         f"{limit} limit", f"{seen.burst / limit:.2f}", verdict(seen.burst <= limit)),
        ("smallest gap between requests to one host, s", f"{seen.min_gap:.3f} ({seen.min_gap_host})",
         f"{interval:.3f}; goal >= {interval - JITTER_S:.3f}", f"{seen.min_gap / interval:.3f}",
         verdict(seen.gaps_over_jitter == 0)),
        ("  the gate's decisions (Redis): most in 1 s; smallest gap, s", f"{seen.decision_burst}; "
         f"{seen.decision_min_gap:.3f}", f"{limit}; {interval:.3f}", f"{seen.decision_min_gap / interval:.3f}", "-"),
        ("worker CPU per page fetched, ms", f"{worker_cpu_per_fetch * 1000:.1f}",
         f"{med['plain'] * 1000:.3f} plain GET", f"{worker_cpu_per_fetch / med['plain']:.0f}", "-"),
        ("peak RSS, largest worker process, MB", f"{largest[2] / mb:.0f}", f"goal < {GOAL_RSS_MB}",
         f"{largest[2] / mb / GOAL_RSS_MB:.2f}", verdict(rss_ok)),
        ("peak RSS of each worker tree (VmHWM summed), MB",
         " / ".join(f"{sum(w.peaks.values()) / mb:.0f}" for w in workers), "-", "-", "-"),
        ("peak PSS of each worker tree, MB", " / ".join(f"{w.pss_peak / mb:.0f}" for w in workers), "-", "-", "-"),
        ("gated fetch() CPU per fetch, ms", f"{med['gated'] * 1000:.3f}", f"{med['plain'] * 1000:.3f} plain client; "
         f"goal < {GOAL_GATE_RATIO}x", f"{gate_ratio:.2f}", verdict(gate_ratio < GOAL_GATE_RATIO)),
        ("  the same, on the plain client's pool limits, ms", f"{med['gated_wide_pool'] * 1000:.3f}",
         f"{med['plain'] * 1000:.3f} plain client", f"{med['gated_wide_pool'] / med['plain']:.2f}", "-"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())

    print("\n== Goals")
    print(f"  {verdict(rate_ok)}  at least {GOAL_RATE_RATIO} of the polite maximum: {seen.rate / polite:.3f}"
          + (" (the run timed out)" if run.timed_out else ""))
    print(f"  {verdict(burst_ok)}  no host ever over its limit: at most {seen.burst} in a 1 s window (limit {limit}); "
          f"{seen.gaps_over_jitter} gaps under {interval - JITTER_S:.3f} s, {seen.gaps_under} under {interval:.3f} s, "
          f"of {len(seen.gaps)}")
    print(f"  {verdict(rss_ok)}  peak worker RSS under {GOAL_RSS_MB} MB: {largest[2] / mb:.0f} MB "
          f"({largest[0]}{', its main process' if largest[1] in root_pids else ', a pool process'})")
    print(f"  {verdict(gate_ratio < GOAL_GATE_RATIO)}  the gate under {GOAL_GATE_RATIO}x a plain client: "
          f"{gate_ratio:.2f}x CPU per fetch")

    executions = len(run.deferrals) + sum(run.deferrals)
    spans = seen.per_host_span
    ideal_span = (seen.requests / args.hosts - 1) * interval
    elapsed = run.finished_at - run.published_at
    print("\n== Notes")
    print(f"  ledger: {len(run.deferrals)} runs, " + ", ".join(f"{s} {n}" for s, n in sorted(run.statuses.items()))
          + "; outcomes " + ", ".join(f"{o} {n}" for o, n in sorted(run.outcomes.items()))
          + "; fetch records " + ", ".join(f"{o} {n}" for o, n in sorted(run.fetch_records.items())))
    if run.deferrals:
        spread = Counter(run.deferrals)
        print(f"  deferrals per run: mean {statistics.mean(run.deferrals):.2f}, max {max(run.deferrals)} ("
              + ", ".join(f"{k}x: {spread[k]}" for k in sorted(spread)) + f"); {executions:,} task executions "
              f"for {pages_fetched:,} pages, {executions / max(1, pages_fetched):.2f} per page; worker CPU "
              f"{run.worker_cpu:.1f} s, {run.worker_cpu / max(1, executions) * 1000:.1f} ms per execution")
    print(f"  the sites saw {seen.requests} requests ({seen.pages} pages, {seen.robots} robots.txt); publishing "
          f"{args.sources:,} runs took {run.publish_s:.2f} s; first request {seen.first - run.published_at:.2f} s "
          f"after publishing began, last {seen.last - run.published_at:.2f} s, every run finished at "
          f"{elapsed:.2f} s")
    if spans:
        print(f"  per host, first to last request: {spans[0]:.1f}-{spans[-1]:.1f} s (median "
              f"{statistics.median(spans):.1f} s; {ideal_span:.1f} s if every turn were used); gaps between "
              f"requests to one host: median {quantile(seen.gaps, 0.5):.3f} s, p90 {quantile(seen.gaps, 0.9):.3f} s, "
              f"max {seen.gaps[-1]:.3f} s")
    if seen.delays:
        # Under a slot queue a waiter back late arrives out of its slot's order, so this is how far
        # the arrivals run behind the gate's schedule, not each request's own delay.
        print("  arrivals behind the gate's schedule (the n-th go or slot to the n-th arrival, per host): "
              f"median {quantile(seen.delays, 0.5) * 1e3:.1f} ms, p99 {quantile(seen.delays, 0.99) * 1e3:.1f} ms, "
              f"max {max(seen.delays) * 1e3:.1f} ms "
              f"({seen.decisions} decisions seen"
              + (f"; {seen.unmatched_hosts} hosts' counts did not match and are left out" if seen.unmatched_hosts
                 else "") + ")")
    print(f"  CPU over the run ({elapsed:.1f} s): workers {run.worker_cpu:.1f} s, our Redis {run.redis_cpu:.1f} s, "
          f"our PostgreSQL backends {run.postgres_cpu:.1f} s, the bench {run.bench_cpu:.1f} s, its sites "
          f"{run.sites_cpu:.1f} s; the whole "
          f"machine {run.machine_cpu:.1f} s of {elapsed * os.cpu_count():.1f} (the rest is other work on it)")
    print("  peak RSS per process, MB: " + "; ".join(
        f"{w.name} main {w.peaks.get(w.process.pid, 0) / mb:.0f}, pool "
        + " ".join(f"{peak / mb:.0f}" for pid, peak in sorted(w.peaks.items()) if pid != w.process.pid)
        for w in workers))
    print(f"  baseline ({args.rounds} rounds of {len(seen.order) or 'the'} GETs, medians): CPU per fetch plain "
          f"{med['plain'] * 1e3:.3f} ms, gated {med['gated'] * 1e3:.3f} ms (a keep-alive pool of "
          f"{base['limits']['gated_keepalive']}), gated with plain's pool of {base['limits']['plain_keepalive']} "
          f"{med['gated_wide_pool'] * 1e3:.3f} ms; wall per fetch {wall['plain'] * 1e3:.2f} / {wall['gated'] * 1e3:.2f}"
          f" / {wall['gated_wide_pool'] * 1e3:.2f} ms; fetched OK {base['plain']['ok']} / {base['gated']['ok']} / "
          f"{base['gated_wide_pool']['ok']}; the sites run at {sites.priority}")
    for error in run.errors:
        print(f"  {error}")


def code_version() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True).stdout
    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "scraping", "scheduler").splitlines()]
    return f"commit {commit}" + (f", uncommitted changes in {', '.join(dirty)}" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second per host")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes per worker")
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--host-concurrency", type=int, default=2, help="SCRAPER_HOST_CONCURRENCY")
    parser.add_argument("--rounds", type=int, default=5, help="baseline rounds of each client")
    parser.add_argument("--quick", action="store_true", help="100 sources on 10 hosts, 3 baseline rounds")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--workdir", help="where the run's temporary folder goes (default: the system's)")
    parser.add_argument("--dump", help="write what the sites saw (arrivals, the gate's decisions) to this JSON file")
    parser.add_argument("--baseline-child", help=argparse.SUPPRESS)
    parser.add_argument("--sites-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        return baseline_child(Path(args.baseline_child))
    if args.sites_child:
        return sites_child(Path(args.sites_child))
    if args.quick:
        args.sources, args.hosts, args.rounds = 100, 10, 3
    if not 1 <= args.hosts <= 254 or args.sources % args.hosts:
        parser.error("--hosts must be 1-254 and divide --sources")

    import psutil
    from postgres_server import PostgresServer

    from wiring.embedded_redis import EmbeddedRedis

    database = PostgresServer(args.postgres_url)
    if not database.reachable():
        print(f"\n== PostgreSQL: not reachable at {args.postgres_url}; skipped (set BENCH_POSTGRES_URL)")
        return
    print(f"scraping bench: {code_version()}; {psutil.cpu_count()} CPUs; "
          f"started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    per_host = args.sources // args.hosts
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-scraping-", dir=args.workdir) as tmp, \
            EmbeddedRedis(Path(tmp) / "redis") as broker:
        workdir = Path(tmp)
        sites = Sites(args.hosts, per_host, broker.url, 1 / args.rate, workdir)
        workers: list[Worker] = []
        database.admin(f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)", f"CREATE DATABASE {RUN_DB}")
        try:
            env = child_env(database_url=database.database_url(RUN_DB), redis_url=broker.url,
                            data_dir=workdir / "data", sites=sites, rate=args.rate,
                            host_concurrency=args.host_concurrency)
            subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=PROJECT, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            os.environ.update(env)
            import django

            django.setup()
            print(f"-- {args.sources:,} sources, sites on port {sites.port} ...", file=sys.stderr, flush=True)
            sources_make(sites)
            print(f"-- {args.workers} workers ...", file=sys.stderr, flush=True)
            workers = workers_start(args.workers, args.concurrency, args.pool, env, workdir)
            ideal = per_host / args.rate
            print(f"-- publishing {args.sources:,} runs (at best {ideal:.0f} s) ...", file=sys.stderr, flush=True)
            run = measured_run(workers, broker.process.pid, sites, timeout=60 + 6 * ideal)
            for worker in workers:
                worker.stop()
            dump = sites.seen()
            if args.dump:
                Path(args.dump).write_text(json.dumps({**dump, "published_at": run.published_at}))
            seen = seen_by_servers(dump, 1 / args.rate)
            order = seen.order or [(name, f"/page-{i + 1:03d}") for i in range(per_host) for name, _ in sites.names]
            print(f"-- baseline, {len(order)} GETs x {args.rounds} rounds per client ...", file=sys.stderr, flush=True)
            base = baseline_run(sites, order, args.rounds, workdir)
            report(args, sites, workers, run, seen, base)
            logged = [line for worker in workers for line in worker.log.read_text(errors="replace").splitlines()
                      if "ERROR" in line or "Traceback" in line]
            if logged:
                print(f"  the workers logged {len(logged)} error line(s); the first: {logged[0][:200]}")
        finally:
            for worker in workers:
                worker.stop()
            sites.stop()
            if "django" in sys.modules and sys.modules["django"].apps.apps.ready:
                from django.db import connections

                connections.close_all()
            database.admin(f"DROP DATABASE IF EXISTS {RUN_DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
