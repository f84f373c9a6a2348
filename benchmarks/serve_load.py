"""Load test of ``idr serve`` on loopback, against the state of a batch run over N records.

    .venv/bin/python benchmarks/serve_load.py --records 1000000
    .venv/bin/python benchmarks/serve_load.py --records 20000 --seconds 5     # a quick look

1. Builds the state once (kept in ``--workdir``): ``idr generate`` for N records, then
   ``idr run`` (``conf/generated.yml``: the example model, identifier rules, three blocking
   rules) with an ``online`` inbox source. ``IDR_DRIVER_MEMORY=8g`` is advisable at 1M.
2. Starts ``idr serve`` in its own process and waits until its state is loaded.
3. For each scenario and each number of concurrent clients (1, 8, 32): clients send requests
   back to back for ``--seconds`` or ``--requests``, whichever ends first, each a new record
   (a new source_id) committed to the inbox before its answer:
   - ``known``: a CRM person's email and name (an identifier rule finds them);
   - ``probabilistic``: a CRM person's first name, last name and birth date, no identifier
     (the blocking rules find candidates, the model decides);
   - ``known lookup``, ``probabilistic lookup``: the same requests with ``persist: false``
     (nothing written: the resolution alone, as a point-of-entry check before a sign-up).
   Every cell (scenario x concurrency) sends payloads no earlier cell sent: a person whose
   record an earlier cell committed would otherwise be resolved against that copy (an easier,
   different request). The persisted cells still grow the service's overlay of accepted
   records: its size before each cell is printed (``pending``), so the drift is visible.
4. Prints p50 / p95 / p99 latency of the successful answers measured by the client (sending to
   answer read), the p99 of the service's own ``latency_ms`` (request parsed to answer built),
   successful answers per second, errors (non-200 answers and broken connections, counted
   apart and not timed), the status mix, and the service's resident memory.

The load generator shares the machine's cores with the service: on 2 cores, the figures are
those of a service with about one core. Compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
RECORDS_PER_PERSON = 1.935  # the generator's average (benchmarks/scale.py)
ONLINE = {
    "name": "online", "format": "delta", "key": "record_id", "timestamp": "received_at",
    "change_tracking": "delta_cdf", "priority": 4, "date_formats": ["yyyy-MM-dd"],
    "columns": {a: a for a in ("first_name", "last_name", "email", "phone", "dob", "loyalty_id")},
}


def build_state(work: Path, records: int) -> Path:
    """The config file of a warehouse resolved from ``records`` generated records (cached)."""
    config_file = work / "pipeline.yml"
    if (work / "lakehouse" / "resolved_membership").exists() and config_file.exists():
        return config_file
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    idr = [sys.executable, "-m", "resolution.cli"]
    people = int(records / RECORDS_PER_PERSON)
    subprocess.run([*idr, "generate", "--people", str(people), "--output", str(work / "data")], check=True)
    document = yaml.safe_load((REPO / "conf" / "generated.yml").read_text())
    document["storage"]["warehouse"] = str(work / "lakehouse")
    for source in document["sources"]:
        source["path"] = str(work / "data" / Path(source["path"]).name)
    document["sources"].append({**ONLINE, "path": str(work / "lakehouse" / "inbox")})
    document["matching"]["model"] = str(REPO / document["matching"]["model"])
    document["serve"] = {"inbox_source": "online", "refresh_seconds": 3600}
    config_file.write_text(yaml.safe_dump(document))
    started = time.perf_counter()
    subprocess.run([*idr, "run", "--config", str(config_file), "--skip-checks"], check=True, cwd=REPO)
    print(f"state built: {records} records in {time.perf_counter() - started:.0f} s")
    return config_file


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(config_file: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "resolution.cli", "serve", "--config", str(config_file), "--port", str(port)],
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            raise RuntimeError("idr serve exited during start-up")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return process, url, time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.25)


def scenarios(work: Path, rng: random.Random) -> dict[str, list[dict]]:
    crm = pd.read_csv(work / "data" / "crm_contacts.csv", dtype=str)
    with_email = crm.dropna(subset=["email", "first_name", "last_name"])
    with_email = with_email.sample(n=min(20000, len(with_email)), random_state=1)
    with_dob = crm.dropna(subset=["dob", "first_name", "last_name"])
    with_dob = with_dob.sample(n=min(20000, len(with_dob)), random_state=2)
    known = [{"email": r.email, "first_name": r.first_name, "last_name": r.last_name} for r in with_email.itertuples()]
    fuzzy = [{"first_name": r.first_name, "last_name": r.last_name, "dob": r.dob} for r in with_dob.itertuples()]
    rng.shuffle(known)
    rng.shuffle(fuzzy)
    # a lookup and its persisted scenario draw from one pool: no payload is sent twice
    return {"known": known, "probabilistic": fuzzy, "known lookup": known, "probabilistic lookup": fuzzy}


class Payloads:
    """Hands out each payload of a pool once, across all the cells that share the pool."""

    def __init__(self, pools: dict[str, list[dict]]):
        self.pools = pools
        self.next: dict[int, int] = {}  # id(pool) -> first unused payload

    def take(self, scenario: str, count: int) -> list[dict]:
        pool = self.pools[scenario]
        start = self.next.get(id(pool), 0)
        if start + count > len(pool):
            raise SystemExit(f"{scenario}: {len(pool) - start} unused payloads left, {count} needed: "
                             "lower --requests or generate more records")
        self.next[id(pool)] = start + count
        return pool[start:start + count]


class Connection:
    """One keep-alive HTTP/1.1 connection, as little client as can be: the load generator shares
    the cores with the service, and every microsecond it spends is one the service waits for."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, url: str) -> Connection:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer, host)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
        return int(lines[0].split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def load(url: str, payloads: list[dict], *, clients: int, seconds: float, requests: int,
               persist: bool) -> dict:
    latencies: list[float] = []
    in_service: list[float] = []  # the service's own latency_ms: what a client elsewhere would see
    statuses: dict[str, int] = {}
    errors = 0
    deadline = time.perf_counter() + seconds
    sent = 0

    async def client() -> None:
        nonlocal sent, errors
        connection = await Connection.open(url)
        try:
            while time.perf_counter() < deadline and sent < min(requests, len(payloads)):
                data = payloads[sent]
                sent += 1
                body = json.dumps({"source": "loadtest", "source_id": uuid.uuid4().hex, "data": data,
                                   "persist": persist}).encode()
                started = time.perf_counter()
                try:
                    code, answer = await connection.post("/v1/resolve", body)
                except (OSError, asyncio.IncompleteReadError):  # counted, then a new connection
                    errors += 1
                    connection.close()
                    connection = await Connection.open(url)
                    continue
                if code != 200:  # an error answer: counted, not timed
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                answer = json.loads(answer)
                in_service.append(answer["latency_ms"])
                statuses[answer["status"]] = statuses.get(answer["status"], 0) + 1
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    ms = np.array(latencies or [float("nan")]) * 1000
    return {
        "requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
        "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)), "p99": float(np.percentile(ms, 99)),
        "service_p99": float(np.percentile(in_service, 99)) if in_service else float("nan"),
        "errors": errors, "statuses": statuses,
    }


def run(coroutine):
    """The load on uvloop when installed (the service's own loop): less client per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def inbox_commits(url: str) -> dict[str, float]:
    """Commit count, records and seconds from the service's Prometheus metrics."""
    found = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        for name, key in (("idr_inbox_commit_seconds_count", "count"), ("idr_inbox_commit_seconds_sum", "seconds"),
                          ("idr_inbox_commit_rows_sum", "rows")):
            if line.startswith(name + " "):
                found[key] = float(line.split()[1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=REPO / "lakehouse-bench" / "serve")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=20.0, help="longest run of one scenario at one concurrency")
    parser.add_argument("--requests", type=int, default=3000, help="most requests of one scenario at one concurrency")
    parser.add_argument("--scenarios", nargs="+", help="only these (default: all)")
    parser.add_argument("--serve", action="append", default=[], metavar="KEY=VALUE",
                        help="a serve: setting for this run, e.g. inbox_writers=1 (compare two settings)")
    args = parser.parse_args()

    work = args.workdir / str(args.records)
    config_file = build_state(work, args.records)
    if args.serve:  # the same state, other service settings
        document = yaml.safe_load(config_file.read_text())
        document["serve"].update(
            {key: yaml.safe_load(value) for key, value in (setting.split("=", 1) for setting in args.serve)})
        config_file = work / "pipeline-serve.yml"
        config_file.write_text(yaml.safe_dump(document))
        print("serve settings:", document["serve"])
    # a fresh inbox each time: records a previous load test left (never ingested) would be
    # taken back at start-up and be candidates of this run's requests
    shutil.rmtree(work / "lakehouse" / "inbox", ignore_errors=True)
    process, url, startup = start_service(config_file)
    try:
        health = httpx.get(f"{url}/health").json()
        print(f"idr serve: {health['state']['records']} records loaded in {startup:.1f} s "
              f"(process start included); resident {psutil.Process(process.pid).memory_info().rss / 2**20:.0f} MiB")
        pools = scenarios(work, random.Random(7))
        payloads = Payloads(pools)
        # warm-up: DuckDB connections, code paths
        run(load(url, payloads.take("known lookup", 100), clients=4, seconds=3, requests=100, persist=False))
        rows = []
        for name in args.scenarios or pools:
            for clients in args.clients:
                pending = httpx.get(f"{url}/health").json()["pending_records"]
                result = run(load(url, payloads.take(name, args.requests), clients=clients, seconds=args.seconds,
                                  requests=args.requests, persist="lookup" not in name))
                result["pending"] = pending
                rows.append((name, clients, result))
                print(f"  {name} x{clients}: p99 {result['p99']:.1f} ms, {result['rps']:.0f} req/s, "
                      f"{result['errors']} errors; {pending} records pending before", flush=True)
        peak = psutil.Process(process.pid).memory_info().rss / 2**20
        print()
        print("| scenario | clients | pending before | answers | req/s | p50 ms | p95 ms | p99 ms | p99 in service "
              "| errors | statuses |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, clients, r in rows:
            mix = ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items()))
            print(f"| {name} | {clients} | {r['pending']} | {r['requests']} | {r['rps']:.0f} | {r['p50']:.1f} | "
                  f"{r['p95']:.1f} | {r['p99']:.1f} | {r['service_p99']:.1f} | {r['errors']} | {mix} |")
        print(f"\nservice resident memory after the runs: {peak:.0f} MiB; state {health['state']['records']} records; "
              f"inbox rows written: {sum(r['requests'] for n, _, r in rows if 'lookup' not in n)}")
        commits = inbox_commits(url)
        print(f"inbox commits: {commits['count']:.0f}, {commits['rows'] / commits['count']:.1f} records and "
              f"{commits['seconds'] / commits['count'] * 1000:.1f} ms each on average")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
