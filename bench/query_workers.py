"""GetNode throughput, 1 query worker vs N: ``python -m bench.query_workers [--help]``.

Not part of ``make test`` nor ``make bench``. In one run, for each worker count (default:
1, then the number of cores), it starts the stack exactly as ``make run`` does
(scripts/run_stack.py, on a temporary data file and free loopback ports), loads a small
graph through the command service, waits until every worker has projected it, and then
runs 16 concurrent GetNode callers for a fixed time. ``--via edge`` (the default): the
callers go through the edge (Envoy, ``python -m gateway``, as ``make run`` starts it), one
connection per client process, and Envoy spreads the calls over the workers. ``--via
direct``: the stack runs without the edge (``EDGEWISE_EDGE=off``) and the callers' channels
are spread round-robin over the workers' ports (caller i uses worker i mod N), as a load
balancer keeping one connection per endpoint would. The callers run in
``--client-procs`` processes (grpc.aio, one event loop each) so the client is less likely to
be the bottleneck; on a small machine the client and the workers share the cores, and the
numbers say so.

Prints calls/s, p50 and p99 for each worker count, side by side. Timings on a shared
machine are noisy: compare numbers from one run, not across runs; ``--rounds R`` measures
the counts in turn R times (1, N, 1, N ...) and reports each count's median round, so a
burst of load from elsewhere does not land on one count only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.stack import BENCH_LIMITS

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-0123456789abcdef0123"
GRAPH = "graphs/workers"
TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RunStack:
    """``scripts/run_stack.py`` with ``workers`` query workers, as ``make run`` starts it."""

    def __init__(self, workdir: Path, workers: int, via: str = "edge") -> None:
        self.workdir = workdir
        self.via = via
        self.command_addr = f"127.0.0.1:{free_port()}"
        self.query_addrs = [f"127.0.0.1:{free_port()}" for _ in range(workers)]
        (workdir / "run").mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEWISE_", "AWS_"))}
        self.env.update({"PYTHONPATH": str(ROOT), "EDGEWISE_RUN_DIR": str(workdir / "run"),
                         "EDGEWISE_DB_PATH": str(workdir / "edgewise.db"), "EDGEWISE_TOKEN_SECRET": SECRET, "EDGEWISE_AUTH_MODE": "dev", **BENCH_LIMITS,
                         "EDGEWISE_COMMAND_ADDR": self.command_addr,
                         "EDGEWISE_QUERY_ADDRS": ",".join(self.query_addrs), "EDGEWISE_LOG_LEVEL": "WARNING"})
        self.edge_addr = f"127.0.0.1:{free_port()}"
        if via == "edge":
            self.env.update({"EDGEWISE_EDGE_GRPC_ADDR": self.edge_addr,
                             "EDGEWISE_EDGE_REST_ADDR": f"127.0.0.1:{free_port()}",
                             "EDGEWISE_EDGE_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
                             "EDGEWISE_EDGE_ACCESS_LOG": str(workdir / "envoy-access.log")})
        else:
            self.env["EDGEWISE_EDGE"] = "off"
        self.log = workdir / "stack.log"
        self.process: subprocess.Popen[str] | None = None

    def call_addresses(self) -> list[str]:
        """Where the callers connect: the edge, or every worker (round-robin)."""
        return [self.edge_addr] if self.via == "edge" else self.query_addrs

    def __enter__(self) -> "RunStack":
        self.process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_stack.py")], cwd=ROOT,
                                        env=self.env, stdout=subprocess.PIPE, stderr=self.log.open("wb"), text=True)
        assert self.process.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the stack did not start:\n{self.log.read_text()[-3000:]}")
            if line.startswith("Ctrl-C stops everything"):
                return self
        raise RuntimeError("the stack did not come up in 90 s")

    def worker_pids(self) -> list[int]:
        """The query workers' pids; with the edge, Envoy's too (it is on the read path)."""
        state = json.loads((self.workdir / "run" / "run_stack.lock").read_text())
        pids = [pid for name, pid in state["children"].items() if name.startswith("query-")]
        if "edge" in state["children"]:  # Envoy: the edge process's children (its own process group)
            pids += [int(p) for p in subprocess.run(["pgrep", "-g", str(state["children"]["edge"])],
                                                    capture_output=True, text=True).stdout.split()]
        return pids

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:  # Ctrl-C, as a user stops make run
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def populate(stack: RunStack, nodes: int) -> None:
    import grpc

    from edgewise.graph.v1 import command_service_pb2 as cmd
    from edgewise.graph.v1 import command_service_pb2_grpc, query_service_pb2_grpc
    from edgewise.graph.v1 import query_service_pb2 as q
    from edgewise.graph.v1 import resources_pb2 as pb

    P = pb.PropertyDefinition
    schema = pb.Schema(node_types=[pb.NodeType(name="Node", properties=[
        P(name="name", kind=pb.PROPERTY_KIND_STRING), P(name="rank", kind=pb.PROPERTY_KIND_INT)])])
    with grpc.insecure_channel(stack.command_addr) as channel:
        commands = command_service_pb2_grpc.GraphCommandServiceStub(channel)
        commands.ApplySchema(cmd.ApplySchemaRequest(graph=GRAPH, schema=schema, request_id=str(uuid.uuid4())),
                             timeout=TIMEOUT)
        token = ""
        for start in range(0, nodes, 100):
            ops = []
            for i in range(start, min(nodes, start + 100)):
                node = pb.Node(type="Node")
                node.properties["name"].CopyFrom(pb.PropertyValue(string_value=f"node {i}"))
                node.properties["rank"].CopyFrom(pb.PropertyValue(int_value=i))
                ops.append(cmd.BatchWriteOperation(create_node=cmd.CreateNodeOperation(node_id=f"n{i}", node=node)))
            token = commands.BatchWrite(cmd.BatchWriteRequest(parent=GRAPH, operations=ops,
                                                              request_id=str(uuid.uuid4())),
                                        timeout=TIMEOUT).consistency_token
    for address in stack.query_addrs:  # every worker has projected (or followed) all of it
        with grpc.insecure_channel(address) as channel:
            query_service_pb2_grpc.GraphQueryServiceStub(channel).GetNode(q.GetNodeRequest(
                name=f"{GRAPH}/nodes/n0", consistency=pb.ReadConsistency(at_least_token=token)), timeout=TIMEOUT)


async def _callers(addresses: list[str], first_caller: int, callers: int, total_callers: int, nodes: int,
                   warmup: float, seconds: float) -> dict[str, object]:
    import grpc

    from edgewise.graph.v1 import query_service_pb2 as q
    from edgewise.graph.v1 import query_service_pb2_grpc

    channels = {a: grpc.aio.insecure_channel(a) for a in addresses}
    try:
        stubs = {a: query_service_pb2_grpc.GraphQueryServiceStub(c) for a, c in channels.items()}
        times: list[float] = []
        errors = 0
        started = time.perf_counter() + warmup
        stop = started + seconds

        async def caller(index: int) -> None:
            nonlocal errors
            stub = stubs[addresses[index % len(addresses)]]  # round-robin: caller i -> worker i mod N
            rng = random.Random(index)
            while (now := time.perf_counter()) < stop:
                try:
                    await stub.GetNode(q.GetNodeRequest(name=f"{GRAPH}/nodes/n{rng.randrange(nodes)}"),
                                       timeout=TIMEOUT)
                except grpc.RpcError:
                    errors += 1
                    continue
                if now >= started:
                    times.append(time.perf_counter() - now)

        await asyncio.gather(*(caller(first_caller + i) for i in range(callers)))
        return {"calls": len(times), "seconds": seconds, "times": times, "errors": errors}
    finally:
        for c in channels.values():
            await c.close()


def client_main(args: argparse.Namespace) -> None:
    """One client process (``--client``): its share of the callers; JSON on stdout."""
    result = asyncio.run(_callers(args.addresses.split(","), args.first_caller, args.callers, args.total_callers,
                                  args.nodes, args.warmup, args.seconds))
    print(json.dumps(result))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(stack: RunStack, callers: int, client_procs: int, nodes: int, warmup: float,
            seconds: float) -> dict[str, float]:
    shares = [callers // client_procs + (1 if i < callers % client_procs else 0) for i in range(client_procs)]
    procs, first = [], 0
    for share in shares:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench.query_workers", "--client", "--addresses", ",".join(stack.call_addresses()),
             "--first-caller", str(first), "--callers", str(share), "--total-callers", str(callers),
             "--nodes", str(nodes), "--warmup", str(warmup), "--seconds", str(seconds)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True))
        first += share
    pids = stack.worker_pids()
    time.sleep(warmup)
    cpu_before, clock_before = sum(cpu_seconds(p) for p in pids), time.monotonic()
    time.sleep(seconds)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    elapsed = time.monotonic() - clock_before
    results = [json.loads(p.communicate(timeout=warmup + seconds + 120)[0]) for p in procs]
    times = sorted(t for r in results for t in r["times"])
    calls = sum(r["calls"] for r in results)

    def pct(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))] * 1000 if times else float("nan")

    return {"calls_per_s": calls / seconds, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "errors": float(sum(r["errors"] for r in results)),
            "worker_cores": cpu / elapsed}  # CPU the workers (and Envoy) used, in cores (1.0 = one core busy)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.query_workers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default=f"1,{os.cpu_count() or 1}",
                        help="worker counts to compare, comma-separated (default: %(default)s: 1 and the cores)")
    parser.add_argument("--callers", type=int, default=16, help="concurrent GetNode callers (default: %(default)s)")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="client processes the callers are spread over (default: %(default)s)")
    parser.add_argument("--nodes", type=int, default=2000, help="nodes in the graph (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (default: %(default)s)")
    parser.add_argument("--via", choices=("edge", "direct"), default="edge",
                        help="through the edge (Envoy), or straight to the workers' ports (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure the counts in turn this many times; report each one's median (default: 1)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--addresses", help=argparse.SUPPRESS)
    parser.add_argument("--first-caller", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--total-callers", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client_main(args)
        return
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    measured: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="edgewise-workers-") as tmp:
        stacks = {}
        try:
            for workers in counts:  # all up at once, loaded once; measured in turn
                workdir = Path(tmp) / f"w{workers}"
                workdir.mkdir()
                stacks[workers] = stack = RunStack(workdir, workers, args.via)
                stack.__enter__()
                populate(stack, args.nodes)
            for _ in range(max(1, args.rounds)):
                for workers in counts:
                    measured[workers].append(measure(stacks[workers], args.callers, max(1, args.client_procs),
                                                     args.nodes, args.warmup, args.seconds))
        finally:
            for stack in stacks.values():
                stack.__exit__()
    rows = [(n, sorted(rs, key=lambda r: r["calls_per_s"])[len(rs) // 2]) for n, rs in measured.items()]
    how = "through the edge (Envoy)" if args.via == "edge" else "straight to the workers, round-robin"
    print(f"GetNode {how}, {args.callers} concurrent callers over {max(1, args.client_procs)} client processes, "
          f"{args.seconds:g} s each, {args.nodes} nodes, read cache on; {os.cpu_count()} cores "
          f"shared by the client and the workers; {max(1, args.rounds)} round(s), median shown")
    print(f"{'query workers':>13}  {'calls/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  {'errors':>6}  "
          f"{'server CPU (cores)':>18}  vs 1 worker  rounds (calls/s)")
    base = rows[0][1]["calls_per_s"] if rows else 1.0
    for workers, r in rows:
        each = ", ".join(f"{m['calls_per_s']:.0f}" for m in measured[workers])
        print(f"{workers:>13}  {r['calls_per_s']:>9.0f}  {r['p50_ms']:>7.2f}  {r['p99_ms']:>7.2f}  "
              f"{int(r['errors']):>6}  {r['worker_cores']:>18.2f}  {r['calls_per_s'] / base:>10.2f}x  {each}")


if __name__ == "__main__":
    main()
