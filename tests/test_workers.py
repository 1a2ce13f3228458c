"""Multi-worker servers, for real: the example services run under ``uvicorn --workers 2``,
``gunicorn -w 2 -k uvicorn_worker.UvicornWorker`` and ``gunicorn -w 2 -k
aiohttp.GunicornWebWorker``, each worker on its own shard of one sharded log, on 127.0.0.1,
driven by concurrent HTTP clients.

* SIGKILL one worker in the middle of the load: the server keeps serving, the replacement
  worker takes the dead worker's shard (after recovering it), and every request that got a
  success response is in the shards afterwards, byte for byte.
* SIGTERM the server in the middle of the load: in every sync mode nothing acknowledged is
  lost and every shard is closed with everything fsynced.
* More workers than shards: the server says which error, instead of dying in silence.
* A log opened before the server forks (``gunicorn --preload``) fails clearly in a worker.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import random
import re
import signal
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
import pytest

import asyncwal
from asyncwal._sharded import shard_name
from tests.campaign import campaign_trials

from .test_integrations import BAD_OUTPUT, Server, free_port, make_payload, running

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pre-fork servers"),
    # The test is only the HTTP client here: one event loop is enough for it.
    pytest.mark.asyncio(loop_factories=["asyncio"]),
]

ROOT: Final = Path(__file__).resolve().parents[1]
EXAMPLES: Final = ROOT / "examples"
GRACE: Final = 2  # seconds a graceful stop waits for requests in flight
EXIT_TIMEOUT: Final = 30.0
CLIENTS: Final = 32
LEVEL: Final = {"sync": "DISK", "batch": "OS", "none": "MEMORY"}
CLOSED_LINE: Final = re.compile(rb"closed (\S+): last_seq=(\d+) durable_seq=(\d+)")


def server_command(kind: str, port: int) -> list[str]:
    """The command line a user would type, with the test's port and short grace periods."""
    # gunicorn kills a worker that has not stopped after --graceful-timeout: leave the app's
    # own graceful stop (GRACE) time to close the log after its requests.
    bind = ["-b", f"127.0.0.1:{port}", "--graceful-timeout", str(GRACE + 3), "--no-control-socket"]
    if kind == "uvicorn":
        return [
            *(sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES), "--factory"),
            *("fastapi_app:app_from_env", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)),
            *("--timeout-graceful-shutdown", str(GRACE)),
        ]
    if kind == "gunicorn":
        return [
            *(sys.executable, "-m", "gunicorn", "-w", "2", "-k", "uvicorn_worker.UvicornWorker"),
            *("--chdir", str(EXAMPLES), *bind, "fastapi_app:app_from_env()"),
        ]
    if kind == "gunicorn-aiohttp":
        return [
            *(sys.executable, "-m", "gunicorn", "-w", "2", "-k", "aiohttp.GunicornWebWorker"),
            *("--chdir", str(EXAMPLES), *bind, "aiohttp_app:runner_from_env"),
        ]
    raise ValueError(kind)


class WorkersServer(Server):
    """A pre-fork server (a master and two workers) running an example service; signal,
    wait, output and stop are those of the single-process server."""

    def __init__(self, kind: str, directory: Path, mode: str, out: Path, **env: str) -> None:
        super().__init__(kind, directory, mode, "auto", out)
        self.kind = kind
        self.env = env

    @property
    def exited(self) -> bool:
        return self.proc is None or self.proc.returncode is not None

    async def start(self) -> None:
        self.port = free_port()
        env = dict(
            os.environ,
            WAL_DIR=str(self.directory),
            WAL_MODE=self.mode,
            WAL_SHARDED="1",
            WAL_GRACE=str(GRACE),
            **self.env,
        )
        with self.out.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *server_command(self.kind, self.port), stdout=out, stderr=out, cwd=ROOT, env=env
            )

    async def shard_pids(self, want: Callable[[dict[int, int]], bool], attempts: int = 400) -> dict[int, int]:
        """Ask /health on fresh connections (each may reach either worker) until the shards
        seen (shard -> pid) satisfy ``want``: readiness of processes that start on their
        own, so a bounded retry."""
        seen: dict[int, int] = {}
        for _ in range(attempts):
            if self.exited:
                raise AssertionError(f"the server exited; its output:\n{self.output()}")
            try:
                async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
                    body = (await client.get("/health")).json()
                seen[body["shard"]] = body["pid"]
                if want(seen):
                    return seen
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        raise AssertionError(f"shards seen: {seen}; the server's output:\n{self.output()}")


@dataclass
class ShardedLoad:
    """What the clients saw: every payload sent, and where each acknowledged one went."""

    sent: set[bytes] = field(default_factory=set)
    acked: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (shard, seq) -> payload
    levels: set[str] = field(default_factory=set)
    transport_errors: int = 0
    in_flight: int = 0
    in_flight_at_event: int = -1
    event_at: float = math.inf  # monotonic time of the kill or the stop
    acked_after_event: dict[int, int] = field(default_factory=dict)  # shard -> acks of requests sent after it
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set at each acknowledgement
    stop: bool = False

    def mark_event(self) -> None:
        self.event_at = time.monotonic()
        self.in_flight_at_event = self.in_flight

    async def until(self, predicate: Callable[[ShardedLoad], bool]) -> None:
        """Wait for acknowledgements until ``predicate`` holds."""
        while not predicate(self):
            self.changed.clear()
            await self.changed.wait()


async def drive(
    server: WorkersServer, *, seed: int, scenario: Callable[[ShardedLoad], Awaitable[None]]
) -> ShardedLoad:
    """POST from CLIENTS concurrent clients while ``scenario`` runs (it kills or stops,
    waiting on the load's progress); the clients stop when it returns or the server exits.
    A client that loses its connection counts a transport error and goes on with a new
    one. Each client also closes its connection every few requests, so that the clients
    keep spreading over the workers (a worker that replaces a dead one gets its share of
    the load at once, not only from clients that lost their connection)."""
    load = ShardedLoad()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=15) as client:

        async def one_client(c: int) -> None:
            rng = random.Random(seed * 1000 + c)
            for i in range(100_000):  # a bound; the loop ends with the scenario or the server
                if load.stop or server.exited:
                    return
                payload = make_payload(rng, b"s%d-c%d-%d" % (seed, c, i))
                load.sent.add(payload)
                sent_at = time.monotonic()
                headers = {"Connection": "close"} if rng.random() < 0.1 else None
                load.in_flight += 1
                try:
                    resp = await client.post("/events", content=payload, headers=headers)
                except httpx.TransportError:
                    load.transport_errors += 1
                    continue
                finally:
                    load.in_flight -= 1
                assert resp.status_code == 201, (resp.status_code, resp.text)
                body = resp.json()
                key = (body["shard"], body["seq"])
                assert key not in load.acked, key
                load.acked[key] = payload
                load.levels.add(body["durability"])
                if sent_at > load.event_at:
                    load.acked_after_event[key[0]] = load.acked_after_event.get(key[0], 0) + 1
                load.changed.set()

        async with asyncio.timeout(90):
            clients = [asyncio.create_task(one_client(c)) for c in range(CLIENTS)]
            try:
                await scenario(load)
            finally:
                load.stop = True
                await asyncio.gather(*clients)
    return load


@contextlib.asynccontextmanager
async def request_parked_in(server: WorkersServer, pid: int) -> AsyncIterator[asyncio.Task[httpx.Response]]:
    """A POST that is certainly in flight inside worker ``pid`` until the block ends: connect
    until a connection reaches that worker (asking /health, bounded), then send the headers
    and half of the body, and hold back the rest until the block ends."""
    release = asyncio.Event()
    parked = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"parked request|first half;"
        parked.set()
        await release.wait()
        yield b"second half"

    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    for _ in range(200):
        async with httpx.AsyncClient(base_url=server.url, limits=one, timeout=30) as client:
            if (await client.get("/health")).json()["pid"] != pid:
                continue
            task = asyncio.create_task(client.post("/events", content=body()))
            await parked.wait()
            try:
                yield task
            finally:
                release.set()
                with contextlib.suppress(httpx.TransportError):
                    await task
            return
    raise AssertionError(f"no connection reached worker {pid}")


async def read_via_http(server: WorkersServer, shard: int) -> dict[int, bytes]:
    """Every record of one shard, through GET /events?shard=K, page by page (each page may
    be served by either worker)."""
    records: dict[int, bytes] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        start = 1
        while True:
            params = {"shard": shard, "start": start, "limit": 500}
            page = (await client.get("/events", params=params, headers={"Connection": "close"})).json()
            for item in page["records"]:
                records[item["seq"]] = base64.b64decode(item["data"])
            if not page["records"]:
                return records
            start = page["next"]


async def read_shards(directory: Path) -> dict[int, dict[int, bytes]]:
    """Every record of every shard, by opening each shard (the server has stopped). Checks
    that recovery had nothing to cut: every shard was closed cleanly."""
    shards: dict[int, dict[int, bytes]] = {}
    for entry in sorted(os.listdir(directory)):
        index = int(entry.removeprefix("shard-"))
        async with asyncwal.open(directory / entry) as log:
            assert log.recovery_report is None, (entry, log.recovery_report)
            shards[index] = {r.seq: r.data async for r in log.replay()}
    return shards


def check_shards(load: ShardedLoad, shards: dict[int, dict[int, bytes]]) -> None:
    """Every acknowledged record is in its shard under its seq with identical bytes; each
    shard is a dense run of seqs from 1 holding only records that were sent, each at most
    once across all shards."""
    for records in shards.values():
        assert list(records) == list(range(1, len(records) + 1))
    lost = {key: data for key, data in load.acked.items() if shards.get(key[0], {}).get(key[1]) != data}
    assert not lost, f"{len(lost)} acknowledged records lost or changed, e.g. {sorted(lost)[:5]}"
    everything = [data for records in shards.values() for data in records.values()]
    assert set(everything) <= load.sent
    assert len(set(everything)) == len(everything)


KILL_CASES: Final = [
    pytest.param("uvicorn", "sync", id="uvicorn-sync"),
    pytest.param("gunicorn", "sync", id="gunicorn-uvicorn_worker-sync"),
    pytest.param("gunicorn-aiohttp", "batch", id="gunicorn-aiohttp-batch"),
]


async def kill_rounds(kind: str, mode: str, tmp_path: Path, rounds: int) -> ShardedLoad:
    """Under load, SIGKILL the worker holding shard 0, then (next round) the one holding
    shard 1, and so on, each while a request is certainly in flight in it; after each kill
    wait until the replacement serves the dead worker's shard. Then stop the server and check
    every acknowledgement of every round against the shards' files."""
    directory = tmp_path / "wal"
    server = WorkersServer(kind, directory, mode, tmp_path / "server.out")
    victims: list[int] = []
    async with running(server):
        pids = await server.shard_pids(lambda seen: len(seen) == 2)

        async def kill_worker_of(load: ShardedLoad, shard: int, acked: int) -> None:
            nonlocal pids
            victim = pids[shard]
            await load.until(lambda load: len(load.acked) >= acked)
            async with request_parked_in(server, victim) as parked:
                load.mark_event()
                os.kill(victim, signal.SIGKILL)
                victims.append(victim)
            with pytest.raises(httpx.TransportError):
                parked.result()  # it was in flight in the worker that died
            assert load.in_flight_at_event > 0, "the kill must land while requests are in flight"
            # The replacement serves the shard: requests sent after the kill went there.
            load.acked_after_event.clear()
            await load.until(lambda load: load.acked_after_event.get(shard, 0) >= 20)
            pids = await server.shard_pids(lambda seen: len(seen) == 2 and seen[shard] != victim)
            assert pids[1 - shard] not in victims, "the other worker kept running"

        async def kill_workers(load: ShardedLoad) -> None:
            for r in range(rounds):
                await kill_worker_of(load, r % 2, 200 * (r + 1))

        load = await drive(server, seed=1, scenario=kill_workers)
        assert load.levels == {LEVEL[mode]}
        # Any worker serves any shard's records, read from the files.
        check_shards(load, {shard: await read_via_http(server, shard) for shard in (0, 1)})
    assert await server.wait() in (0, -signal.SIGTERM)
    # Each replacement took the dead worker's shard; no third shard was made.
    assert sorted(os.listdir(directory)) == [shard_name(0), shard_name(1)]
    check_shards(load, await read_shards(directory))
    output = server.output()
    assert not [bad for bad in BAD_OUTPUT if bad in output], output
    return load


@pytest.mark.parametrize(("kind", "mode"), KILL_CASES)
async def test_sigkill_of_a_worker_keeps_serving_and_loses_no_acknowledged_record(
    kind: str, mode: str, tmp_path: Path
) -> None:
    load = await kill_rounds(kind, mode, tmp_path, rounds=1)
    print(f"{kind}/{mode}: one worker killed; {len(load.acked)} acknowledged records verified")


@pytest.mark.campaign
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(("kind", "mode"), KILL_CASES)
async def test_kill_campaign(request: pytest.FixtureRequest, kind: str, mode: str, tmp_path: Path) -> None:
    """``pytest -m campaign`` or ASYNCWAL_CAMPAIGN_TRIALS=N: N workers killed in turn under
    load, in one server run, every acknowledgement checked at the end."""
    trials = campaign_trials(request.config.getoption("markexpr") or "", 10)
    if trials is None:
        pytest.skip("long campaign: run with -m campaign or ASYNCWAL_CAMPAIGN_TRIALS=N")
    load = await kill_rounds(kind, mode, tmp_path, rounds=trials)
    print(f"{kind}/{mode}: {trials} workers killed; {len(load.acked)} acknowledged records verified")


TERM_CASES: Final = [
    pytest.param("uvicorn", "none", id="uvicorn-none"),
    pytest.param("gunicorn", "batch", id="gunicorn-uvicorn_worker-batch"),
    pytest.param("gunicorn-aiohttp", "sync", id="gunicorn-aiohttp-sync"),
]


@pytest.mark.parametrize(("kind", "mode"), TERM_CASES)
async def test_sigterm_mid_load_loses_nothing_in_any_mode(kind: str, mode: str, tmp_path: Path) -> None:
    directory = tmp_path / "wal"
    server = WorkersServer(kind, directory, mode, tmp_path / "server.out")
    async with running(server):
        await server.shard_pids(lambda seen: len(seen) == 2)

        async def stop_the_server(load: ShardedLoad) -> None:
            await load.until(lambda load: len(load.acked) >= 200)
            load.mark_event()
            server.signal(signal.SIGTERM)
            await server.wait()

        load = await drive(server, seed=2, scenario=stop_the_server)
        code = await server.wait()
    assert load.in_flight_at_event > 0
    assert code in (0, -signal.SIGTERM), server.output()
    output = server.output()
    assert not [bad for bad in BAD_OUTPUT if bad in output], output
    # Each worker closed its shard after its last request: everything written and fsynced,
    # even what none mode had acknowledged from memory.
    closed = {
        Path(p.decode()).name: (int(last), int(durable))
        for p, last, durable in CLOSED_LINE.findall(output.encode())
    }
    assert sorted(closed) == [shard_name(0), shard_name(1)], output
    assert all(last == durable for last, durable in closed.values())
    shards = await read_shards(directory)
    check_shards(load, shards)
    assert {shard_name(i): len(records) for i, records in shards.items()} == {
        n: last for n, (last, _) in closed.items()
    }
    print(
        f"{kind}/{mode}: SIGTERM with {load.in_flight_at_event} requests in flight; "
        f"{len(load.acked)} acknowledged, all verified"
    )


async def test_more_workers_than_shards_fails_with_a_clear_error(tmp_path: Path) -> None:
    """Two workers, one shard: the second worker cannot start, and says why."""
    server = WorkersServer("uvicorn", tmp_path / "wal", "sync", tmp_path / "server.out", WAL_MAX_SHARDS="1")
    async with running(server):
        # uvicorn stops the whole server when a worker fails at startup.
        code = await server.wait()
    output = server.output()
    print(f"uvicorn exited with {code}")
    assert "NoFreeShardError" in output and "every shard of" in output and "max_shards=1" in output, output


PRELOADED_APP: Final = textwrap.dedent(
    """
    import asyncio, os
    from fastapi import FastAPI
    import asyncwal

    # Wrong on purpose: the log is opened in the gunicorn master, before it forks the workers.
    loop = asyncio.new_event_loop()
    log = loop.run_until_complete(asyncwal.open_sharded(os.environ["WAL_DIR"]))
    app = FastAPI()

    @app.post("/events")
    async def post() -> dict[str, object]:
        try:
            return {"seq": await log.append(b"from a worker")}
        except asyncwal.WALError as exc:
            return {"error": type(exc).__name__, "detail": str(exc)}
    """
)


async def test_a_log_opened_before_the_fork_fails_clearly_in_the_workers(tmp_path: Path) -> None:
    (tmp_path / "preloaded.py").write_text(PRELOADED_APP)
    port = free_port()
    directory = tmp_path / "wal"
    out = tmp_path / "server.out"
    cmd = [
        *(sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-k", "uvicorn_worker.UvicornWorker"),
        *("--chdir", str(tmp_path), "-b", f"127.0.0.1:{port}", "--no-control-socket", "preloaded:app"),
    ]
    with out.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=sink, stderr=sink, env=dict(os.environ, WAL_DIR=str(directory))
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(200):
                try:
                    resp = await client.post("/events")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError(out.read_text())
        assert resp.status_code == 200
        assert resp.json()["error"] == "WrongProcessError", resp.json()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(EXIT_TIMEOUT):
            await proc.wait()
    # The worker touched nothing of the master's: the shard holds no record.
    async with asyncwal.open(directory / shard_name(0)) as log:
        assert log.last_seq == 0
