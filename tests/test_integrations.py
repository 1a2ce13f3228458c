"""The web integrations, for real: the example services run as server processes (uvicorn for
FastAPI, aiohttp's runner) on 127.0.0.1 and are driven by a real HTTP client under
concurrency. SIGKILL in the middle of the load, restart, and every acknowledged record must be
there, byte for byte; SIGTERM in the middle of the load, and in every sync mode nothing
acknowledged is lost and the log is closed with everything fsynced.

The helpers themselves (lifespan, dependency, cleanup_ctx, AppKey, the import guards) are
tested in-process first. ``pytest -m campaign`` adds a longer kill campaign.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fastapi import Depends
from starlette.requests import HTTPConnection, Request

import asyncwal
from asyncwal.integrations.aiohttp import SHARDED_WAL_KEY, WAL_KEY, wal_cleanup_ctx
from asyncwal.integrations.fastapi import (
    ShardedWalDep,
    WalDep,
    get_sharded_wal,
    get_wal,
    wal_lifespan,
)
from tests.campaign import campaign_trials

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and POSIX signals")
# The in-process tests run under asyncio and uvloop (conftest). With a server process, the
# test is only its HTTP client, and one event loop is enough for that; the servers run under
# asyncio or uvloop, chosen per test.
client_loop = pytest.mark.asyncio(loop_factories=["asyncio"])

ROOT: Final = Path(__file__).resolve().parents[1]
EXAMPLES: Final = {
    "fastapi": ROOT / "examples" / "fastapi_app.py",
    "aiohttp": ROOT / "examples" / "aiohttp_app.py",
}
# Seconds a graceful stop waits for requests in flight. aiohttp stops reading its connections
# when a stop begins, so a request whose body was still on its way waits this long and fails.
GRACE: Final = 1.0
EXIT_TIMEOUT: Final = 30.0  # a graceful stop takes well under a second, or GRACE at most
CLOSED_LINE: Final = re.compile(rb"closed (\S+): last_seq=(\d+) durable_seq=(\d+)")


# -- the helpers, in-process ------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_import_asyncwal_imports_no_web_framework() -> None:
    done = run_python(
        """
        import sys, asyncwal
        loaded = [m for m in ("fastapi", "starlette", "aiohttp", "uvicorn", "asyncwal.integrations")
                  if m in sys.modules]
        print(loaded)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("fastapi", "fastapi", "fastapi"),
        ("fastapi", "starlette", "fastapi"),
        ("aiohttp", "aiohttp", "aiohttp"),
    ],
)
def test_a_missing_extra_names_what_to_install(module: str, missing: str, extra: str) -> None:
    done = run_python(
        f"""
        import sys
        sys.modules[{missing!r}] = None  # as if it were not installed
        try:
            import asyncwal.integrations.{module}
        except ImportError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert f"pip install 'asyncwal[{extra}]'" in done.stdout


async def test_wal_lifespan_opens_yields_state_and_closes(tmp_path: Path) -> None:
    lifespan = wal_lifespan(tmp_path / "wal", sync_mode="batch")
    async with lifespan(object()) as state:
        log = state["wal"]
        assert isinstance(log, asyncwal.Log) and not log.closed and log.sync_mode == "batch"
        assert get_wal(HTTPConnection({"type": "http", "state": dict(state)})) is log
        await log.append(b"accepted at OS only")
    assert log.closed  # and close() wrote and fsynced it:
    assert log.durable_seq == log.last_seq == 1
    async with asyncwal.open(tmp_path / "wal") as again:
        assert [r.data async for r in again.replay()] == [b"accepted at OS only"]


@contextlib.asynccontextmanager
async def serving_in_process(app: Any, ready_path: str = "/openapi.json") -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` under a real uvicorn server in this event loop; yield a client for it."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await wait_until_ready(client, task.done, ready_path)
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


async def test_wal_lifespan_works_for_starlette_and_uvicorn_in_process(tmp_path: Path) -> None:
    """The state reaches the request through a real ASGI server, for FastAPI's dependency."""
    from fastapi import FastAPI

    app = FastAPI(lifespan=wal_lifespan(tmp_path / "wal"))

    @app.post("/r")
    async def post(log: WalDep) -> dict[str, int]:
        return {"seq": await log.append(b"x")}

    async with serving_in_process(app) as client:
        got = await asyncio.gather(*(client.post("/r") for _ in range(20)))
        assert sorted(r.json()["seq"] for r in got) == list(range(1, 21))


def sync_lookup(request: Request) -> asyncwal.Log:  # what the dependency used to be
    return get_wal(request)


SyncWalDep = Annotated[asyncwal.Log, Depends(sync_lookup)]


def anyio_worker_threads() -> set[int]:
    """The threads of anyio's thread pool (where FastAPI runs a plain ``def`` dependency)."""
    return {t.ident or 0 for t in threading.enumerate() if t.name == "AnyIO worker thread"}


async def test_the_dependency_costs_no_thread_pool_hop(tmp_path: Path) -> None:
    """A request through WalDep (or ShardedWalDep) runs wholly on the event loop: no thread
    of anyio's pool is started for it. The same request through a plain ``def`` dependency
    does start one, which shows the check sees a hop when there is one."""
    from fastapi import FastAPI

    app = FastAPI(lifespan=wal_lifespan(tmp_path / "wal", sharded=True))

    @app.post("/dep")
    async def through_dep(log: WalDep, sharded: ShardedWalDep) -> dict[str, int]:
        assert sharded.log is log
        return {"shard": sharded.shard, "seq": await log.append(b"x")}

    @app.post("/sync-dep")
    async def through_sync_dep(log: SyncWalDep) -> dict[str, int]:
        return {"seq": await log.append(b"y")}

    async with serving_in_process(app) as client:
        before = anyio_worker_threads()
        got = await asyncio.gather(*(client.post("/dep") for _ in range(20)))
        assert sorted(r.json()["seq"] for r in got) == list(range(1, 21))
        assert {r.json()["shard"] for r in got} == {0}
        assert anyio_worker_threads() - before == set(), "a request through WalDep used a worker thread"
        assert (await client.post("/sync-dep")).status_code == 200
        assert anyio_worker_threads() - before, "the check must see the hop of a def dependency"


def test_wal_lifespan_checks_options_when_the_app_is_built(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sync_mode"):
        wal_lifespan(tmp_path / "wal", sync_mode="fast")
    with pytest.raises(TypeError):
        wal_lifespan(tmp_path / "wal", no_such_option=1)
    with pytest.raises(ValueError, match="sync_mode"):
        wal_cleanup_ctx(tmp_path / "wal", sync_mode="fast")
    not_a_bool: Any = "yes"
    for helper in (wal_lifespan, wal_cleanup_ctx):
        with pytest.raises(ValueError, match="max_shards only applies with sharded=True"):
            helper(tmp_path / "wal", max_shards=4)
        with pytest.raises(ValueError, match="max_shards"):
            helper(tmp_path / "wal", sharded=True, max_shards=0)
        with pytest.raises(TypeError, match="sharded must be a bool"):
            helper(tmp_path / "wal", sharded=not_a_bool)
    assert not any(tmp_path.iterdir())


async def test_sharded_wal_lifespan_gives_each_opener_its_own_shard(tmp_path: Path) -> None:
    lifespan = wal_lifespan(tmp_path / "wal", sharded=True, max_shards=2, sync_mode="batch")
    async with lifespan(object()) as first, lifespan(object()) as second:
        shards = [first["wal_sharded"], second["wal_sharded"]]
        assert [s.shard for s in shards] == [0, 1]
        assert first["wal"] is shards[0].log and first["wal"].sync_mode == "batch"
        conn = HTTPConnection({"type": "http", "state": dict(second)})
        assert get_wal(conn) is shards[1].log and get_sharded_wal(conn) is shards[1]
        assert [await s.append(b"x") for s in shards] == [1, 1]
        with pytest.raises(asyncwal.NoFreeShardError):
            async with lifespan(object()):
                pass
    assert all(s.closed for s in shards)
    assert shards[1].log.durable_seq == 1  # closed: written and fsynced


async def test_sharded_wal_cleanup_ctx(tmp_path: Path) -> None:
    async def post(request: web.Request) -> web.Response:
        sharded = request.app[SHARDED_WAL_KEY]
        assert request.app[WAL_KEY] is sharded.log
        return web.json_response([sharded.shard, await sharded.append(await request.read())])

    apps = []
    for _ in range(2):
        app = web.Application()
        app.cleanup_ctx.append(wal_cleanup_ctx(tmp_path / "wal", sharded=True))
        app.router.add_post("/", post)
        apps.append(app)
    async with TestClient(TestServer(apps[0], host="127.0.0.1")) as one:
        async with TestClient(TestServer(apps[1], host="127.0.0.1")) as two:
            assert await (await one.post("/", data=b"a")).json() == [0, 1]
            assert await (await two.post("/", data=b"b")).json() == [1, 1]
            assert await (await one.post("/", data=b"c")).json() == [0, 2]
    assert apps[0][SHARDED_WAL_KEY].closed and apps[1][SHARDED_WAL_KEY].closed


def test_get_wal_without_the_lifespan_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="wal_lifespan"):
        get_wal(HTTPConnection({"type": "http"}))
    with pytest.raises(RuntimeError, match="wal_lifespan"):
        get_wal(HTTPConnection({"type": "http", "state": {"wal": "not a log"}}))
    with pytest.raises(RuntimeError, match=r"sharded=True"):
        get_sharded_wal(HTTPConnection({"type": "http", "state": {"wal": "a log, not sharded"}}))


async def test_wal_cleanup_ctx_opens_at_startup_and_closes_at_cleanup(tmp_path: Path) -> None:
    audit: web.AppKey[asyncwal.Log] = web.AppKey("audit", asyncwal.Log)

    async def post(request: web.Request) -> web.Response:
        seqs = [await request.app[WAL_KEY].append(b"main"), await request.app[audit].append(b"audit")]
        return web.json_response(seqs)

    app = web.Application()
    app.cleanup_ctx.append(wal_cleanup_ctx(tmp_path / "main", sync_mode="none"))
    app.cleanup_ctx.append(wal_cleanup_ctx(tmp_path / "audit", key=audit))  # a second log
    app.router.add_post("/", post)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post("/")
        assert resp.status == 200 and await resp.json() == [1, 1]
        main, second = app[WAL_KEY], app[audit]
        assert not main.closed and main.sync_mode == "none" and second.sync_mode == "sync"
    assert main.closed and second.closed
    assert main.durable_seq == 1  # none mode: close() wrote and fsynced the MEMORY-acked record
    async with asyncwal.open(tmp_path / "main") as again:
        assert [r.data async for r in again.replay()] == [b"main"]


# -- real server processes --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_until_ready(
    client: httpx.AsyncClient, died: Callable[[], bool], path: str = "/health", attempts: int = 300
) -> None:
    """Poll GET ``path`` until it answers 200: readiness of a server that starts on its own
    (another process, or a task), so a bounded retry."""
    for _ in range(attempts):
        if died():
            raise AssertionError("the server exited before it was ready")
        try:
            if (await client.get(path, timeout=2)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"the server was not ready after {attempts} attempts")


class Server:
    """One example service running as a child process on 127.0.0.1."""

    def __init__(
        self, framework: str, directory: Path, mode: str, loop: str, out: Path, extra: tuple[str, ...] = ()
    ) -> None:
        self.framework = framework
        self.directory = directory
        self.mode = mode
        self.loop = loop
        self.out = out  # the child's stdout and stderr
        self.extra = extra  # more command-line arguments
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = free_port()
        args = [
            f"--dir={self.directory}",
            f"--mode={self.mode}",
            f"--port={self.port}",
            f"--loop={self.loop}",
        ]
        args.append(f"--grace={GRACE}")
        args += self.extra
        with self.out.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(EXAMPLES[self.framework]), *args, stdout=out, stderr=out, cwd=ROOT
            )
        async with httpx.AsyncClient(base_url=self.url) as client:
            try:
                await wait_until_ready(client, lambda: self.proc is None or self.proc.returncode is not None)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; its output:\n{self.output()}") from None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait(self) -> int:
        """The exit code; bounded by EXIT_TIMEOUT."""
        assert self.proc is not None
        async with asyncio.timeout(EXIT_TIMEOUT):
            return await self.proc.wait()

    def output(self) -> str:
        return self.out.read_bytes().decode(errors="replace")

    async def stop(self) -> None:
        """SIGTERM and wait; SIGKILL if it does not stop (a test failure has already happened)."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            await self.wait()
        except TimeoutError:
            self.signal(signal.SIGKILL)
            await self.wait()


@contextlib.asynccontextmanager
async def running(server: Server) -> AsyncIterator[Server]:
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def make_payload(rng: random.Random, tag: bytes) -> bytes:
    """A unique record: the tag, then 0..600 bytes of any value (JSON would not carry them)."""
    return tag + b"|" + rng.randbytes(rng.choice((0, 1, 17, 128, 600)))


@dataclass
class Load:
    """What the client saw: every payload sent, and the seq of every acknowledged one."""

    sent: set[bytes] = field(default_factory=set)
    acked: dict[int, bytes] = field(default_factory=dict)
    transport_errors: int = 0
    in_flight: int = 0
    in_flight_at_signal: int = -1
    levels: set[str] = field(default_factory=set)


async def drive(
    server: Server, *, workers: int, signal_after: int, sig: int, seed: int, load: Load | None = None
) -> Load:
    """POST from ``workers`` concurrent clients until the server goes away; send ``sig`` to it
    once ``signal_after`` requests have been acknowledged in this call (others are then in
    flight). Adds to ``load`` if given (a log that lives through several rounds)."""
    load = Load() if load is None else load
    load.in_flight_at_signal = -1
    load.transport_errors = 0
    acked_before = len(load.acked)
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=15) as client:

        async def worker(w: int) -> None:
            rng = random.Random(seed * 1000 + w)
            for i in range(100_000):  # bound; the loop ends when the server goes away
                payload = make_payload(rng, b"s%d-w%d-%d" % (seed, w, i))
                load.sent.add(payload)
                load.in_flight += 1
                try:
                    resp = await client.post("/events", content=payload)
                except httpx.TransportError:
                    load.transport_errors += 1
                    return
                finally:
                    load.in_flight -= 1
                assert resp.status_code == 201, (resp.status_code, resp.text)
                body = resp.json()
                assert body["seq"] not in load.acked
                load.acked[body["seq"]] = payload
                load.levels.add(body["durability"])
                if len(load.acked) - acked_before == signal_after:
                    load.in_flight_at_signal = load.in_flight
                    server.signal(sig)

        async with asyncio.timeout(60):
            await asyncio.gather(*(worker(w) for w in range(workers)))
    return load


async def read_all(server: Server) -> dict[int, bytes]:
    """Every record of the restarted server's log, through GET /events, page by page."""
    records: dict[int, bytes] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        start = 1
        while True:
            page = (await client.get("/events", params={"start": start, "limit": 700})).json()
            for item in page["records"]:
                records[item["seq"]] = base64.b64decode(item["data"])
            if not page["records"]:
                return records
            start = page["next"]


def check_recovered(load: Load, records: dict[int, bytes]) -> None:
    """Every acknowledged record is present under its seq with identical bytes; the log is a
    dense run of seqs from 1 holding only records that were sent, each at most once."""
    assert list(records) == list(range(1, len(records) + 1))
    missing = {seq: data for seq, data in load.acked.items() if records.get(seq) != data}
    assert not missing, f"{len(missing)} acknowledged records lost or changed, e.g. {sorted(missing)[:5]}"
    assert set(records.values()) <= load.sent
    assert len(set(records.values())) == len(records)


async def health(server: Server) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        body: dict[str, Any] = (await client.get("/health")).json()
        return body


async def append_one_more(server: Server, load: Load, payload: bytes) -> None:
    """The restarted log takes appends again, right after the recovered records."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        load.sent.add(payload)
        resp = await client.post("/events", content=payload)
        assert resp.status_code == 201
        load.acked[resp.json()["seq"]] = payload


WORKERS: Final = 32  # concurrent POSTs (the client, httpx, tops out at ~250-400 requests/s here)
# What the server output must never show: errors of the log, or of the app's own code.
BAD_OUTPUT: Final = (
    "LogClosedError",
    "LogFailedError",
    "CorruptLogError",
    "Exception in ASGI application",
    "never retrieved",
    "ResourceWarning",
    "unclosed",
)
LEVEL: Final = {"sync": "DISK", "batch": "OS", "none": "MEMORY"}


async def kill_round(
    framework: str, mode: str, loop: str, tmp_path: Path, *, seed: int, after: int, load: Load | None = None
) -> Load:
    """Drive, SIGKILL mid-load, restart on the same directory, verify every acknowledgement
    (of this round and of the earlier rounds that ``load`` holds)."""
    directory = tmp_path / "wal"
    server = Server(framework, directory, mode, loop, tmp_path / f"{framework}.out")
    async with running(server):
        load = await drive(
            server, workers=WORKERS, signal_after=after, sig=signal.SIGKILL, seed=seed, load=load
        )
        assert await server.wait() == -signal.SIGKILL
    assert load.in_flight_at_signal > 0, "the kill must land while requests are in flight"
    assert load.transport_errors > 0 and load.levels == {LEVEL[mode]}
    async with running(server):
        records = await read_all(server)
        check_recovered(load, records)
        status = await health(server)
        assert status["last_seq"] == len(records)
        await append_one_more(server, load, b"after restart %d" % seed)
        assert max(load.acked) == len(records) + 1
    return load


# Each framework under each event loop, across the cases.
KILL_CASES: Final = [
    pytest.param("fastapi", "sync", "uvloop", id="fastapi-sync-uvloop"),
    pytest.param("aiohttp", "sync", "asyncio", id="aiohttp-sync-asyncio"),
    pytest.param("fastapi", "batch", "asyncio", id="fastapi-batch-asyncio"),
    pytest.param("aiohttp", "batch", "uvloop", id="aiohttp-batch-uvloop"),
]


@client_loop
@pytest.mark.parametrize(("framework", "mode", "loop"), KILL_CASES)
async def test_sigkill_mid_load_keeps_every_acknowledged_record(
    framework: str, mode: str, loop: str, tmp_path: Path
) -> None:
    """sync acknowledges at DISK and batch at OS: both survive the death of the process."""
    load = await kill_round(framework, mode, loop, tmp_path, seed=1, after=200)
    assert len(load.acked) > 200
    print(
        f"{framework}/{mode}/{loop}: SIGKILL with {load.in_flight_at_signal} requests in flight; "
        f"{len(load.acked)} acknowledged records verified after restart"
    )


TERM_CASES: Final = [
    pytest.param(framework, mode, loop, id=f"{framework}-{mode}-{loop}")
    for framework, loops in (("fastapi", ("uvloop", "asyncio")), ("aiohttp", ("asyncio", "uvloop")))
    for mode, loop in zip(("sync", "batch", "none"), (*loops, loops[0]), strict=True)
]


@client_loop
@pytest.mark.parametrize(("framework", "mode", "loop"), TERM_CASES)
async def test_sigterm_mid_load_loses_nothing_in_any_mode(
    framework: str, mode: str, loop: str, tmp_path: Path
) -> None:
    directory = tmp_path / "wal"
    server = Server(framework, directory, mode, loop, tmp_path / f"{framework}.out")
    async with running(server):
        load = await drive(server, workers=WORKERS, signal_after=200, sig=signal.SIGTERM, seed=2)
        code = await server.wait()
    assert load.in_flight_at_signal > 0
    # uvicorn re-raises the signal once it has shut down gracefully; aiohttp exits with 0.
    assert code in (0, -signal.SIGTERM), server.output()
    output = server.output()
    assert not [bad for bad in BAD_OUTPUT if bad in output], output
    # The lifespan / cleanup_ctx closed the log after the last request: everything written
    # and fsynced, even what none mode had acknowledged from memory.
    closed = CLOSED_LINE.findall(server.out.read_bytes())
    assert len(closed) == 1, server.output()
    path, last, durable = closed[0]
    assert Path(path.decode()) == directory and int(last) == int(durable) >= len(load.acked)
    async with running(server):
        records = await read_all(server)
        check_recovered(load, records)
        assert len(records) == int(last)  # nothing accepted was lost, acknowledged or not
        status = await health(server)
        assert status["recovery"] is None  # a clean close leaves nothing to cut
    print(
        f"{framework}/{mode}/{loop}: SIGTERM with {load.in_flight_at_signal} requests in flight; "
        f"{len(load.acked)} acknowledged, {len(records)} records after restart, all verified"
    )


@client_loop
@pytest.mark.campaign
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("framework", ["fastapi", "aiohttp"])
async def test_kill_campaign(request: pytest.FixtureRequest, framework: str, tmp_path: Path) -> None:
    """``pytest -m campaign`` or ASYNCWAL_CAMPAIGN_TRIALS=N: N kill rounds per framework and
    mode, at random points, on the same directory (each restart recovers the last kill)."""
    trials = campaign_trials(request.config.getoption("markexpr") or "", 10)
    if trials is None:
        pytest.skip("long campaign: run with -m campaign or ASYNCWAL_CAMPAIGN_TRIALS=N")
    rng = random.Random(framework)
    for mode in ("sync", "batch"):
        directory = tmp_path / mode
        directory.mkdir()
        load = Load()
        for trial in range(trials):
            loop = ("asyncio", "uvloop")[trial % 2]
            after = rng.randrange(1, 2000)
            load = await kill_round(
                framework, mode, loop, directory, seed=100 + trial, after=after, load=load
            )
        print(f"{framework}/{mode}: {trials} kills, {len(load.acked)} acknowledged records verified")
