"""The warm kernel pool (`[plugins.local] pool = {python3 = 1}`): idle, started kernels per kernelspec,
handed to start requests after being relocated to the request's directory and environment.

Members are the provider's private kernels: not listed, so never culled, never announced, never
relayed; a member that dies while idle is dropped and replaced; all are killed with the provider.
Only kernels whose kernelspec says how to relocate them are pooled (ipykernel through the local
provisioner); the relocation is one silent execute through jupyter_client's kernel client, verified
by the kernel's own answer for `os.getcwd()`.
"""

from __future__ import annotations

import asyncio
import ast
import hashlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .exits import ExitWatch

if TYPE_CHECKING:
    from .manager import _Kernel

log = logging.getLogger("himalia.local")

RELOCATE_TIMEOUT = 10.0
"""Seconds a member gets to answer its relocation before it is discarded (and a kernel cold-started)."""

START_ONLY_VARS = frozenset({
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "PYTHONUSERBASE",
    "PYTHONHASHSEED", "PYTHONOPTIMIZE", "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS", "PYTHONUTF8",
    "PYTHONIOENCODING", "PYTHONMALLOC", "PYTHONDEVMODE", "PYTHONPLATLIBDIR", "PYTHONEXECUTABLE",
    "LD_LIBRARY_PATH", "LD_PRELOAD", "DYLD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES",
    "MPLBACKEND", "MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_CONFIG_DIR", "JUPYTER_PATH", "JUPYTER_RUNTIME_DIR",
    "CUDA_VISIBLE_DEVICES", "PATH", "VIRTUAL_ENV", "CONDA_PREFIX", "HOME", "LANG", "TZ",
})
START_ONLY_PREFIXES = ("LC_", "OMP_", "MKL_", "OPENBLAS_", "NUMEXPR_", "VECLIB_", "KMP_", "PYDEVD_")
"""Variables read once, as the process starts (the interpreter, the dynamic linker, BLAS thread pools,
matplotlib's backend, locale, IPython's dirs): set later they would silently do nothing, so a request
that sets one to another value than the members have is not served from the pool."""


def start_only(var: str) -> bool:
    return var in START_ONLY_VARS or var.startswith(START_ONLY_PREFIXES)


def pool_key_env(env: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """The part of a request's environment that decides which pool may serve it: the start-only
    variables it sets to a value the server's environment (the members') does not have."""
    return tuple(sorted((k, v) for k, v in (env or {}).items() if start_only(k) and os.environ.get(k) != v))


def unrelocatable(spec: Mapping[str, Any]) -> str | None:
    """Why kernels of this kernelspec (its kernel.json as a dict) cannot be relocated, or None if they
    can. The spec decides: `metadata.himalia.relocate` = false refuses, "ipykernel" accepts; otherwise
    an ipykernel (Python, argv running ipykernel) launched by the local provisioner is relocatable."""
    metadata = spec.get("metadata") or {}
    said = (metadata.get("himalia") or {}).get("relocate") if isinstance(metadata.get("himalia"), dict) else None
    if said is False:
        return "its kernelspec says metadata.himalia.relocate = false"
    provisioner = (metadata.get("kernel_provisioner") or {}).get("provisioner_name", "local-provisioner")
    if provisioner != "local-provisioner":
        return f"its provisioner {provisioner!r} may not run it in a directory of this host"
    if said == "ipykernel":
        return None
    if (spec.get("language") or "").lower() != "python":
        return f"it is a {spec.get('language') or 'unknown'} kernel: only ipykernel can be relocated"
    argv = [str(a) for a in spec.get("argv") or []]
    if not any("ipykernel" in a for a in argv):
        return "its argv does not run ipykernel"
    if any("$" in str(v) for v in (spec.get("env") or {}).values()):
        # jupyter_client substitutes ${VAR} from the launch environment: a member's came from the server's
        return "its env templates variables from the launch environment (${...})"
    return None


def spec_fingerprint(spec: Mapping[str, Any]) -> str:
    """What a member was launched from (argv, env, provisioner): a changed kernelspec makes members stale."""
    keyed = {k: spec.get(k) for k in ("argv", "env", "language", "interrupt_mode")}
    keyed["provisioner"] = (spec.get("metadata") or {}).get("kernel_provisioner")
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RelocationFailed(Exception):
    """The member did not move (no answer, an error, or another directory than asked)."""


def relocation_code(cwd: str, env: Mapping[str, str]) -> str:
    """One statement list that binds no name in the user's namespace: chdir, environ, `__session__`."""
    code = f"__import__('os').chdir({cwd!r}); __import__('os').environ.update({dict(env)!r})"
    session = env.get("JPY_SESSION_NAME")
    if session:  # what ipykernel does at start with JPY_SESSION_NAME (ipkernel.py)
        code += f"; get_ipython().user_ns.__setitem__('__session__', {session!r})"
    return code


async def relocate(km: Any, cwd: str, env: Mapping[str, str], timeout: float = RELOCATE_TIMEOUT,
                   on_sent: Callable[[str], None] | None = None) -> None:
    """Move a running ipykernel to `cwd` with `env`, through jupyter_client's kernel client (a silent
    execute, no history, no execution count), and check the kernel's own `os.getcwd()` answer. Then
    make a restart come back there: the manager's launch arguments, the provisioner's cwd, and the
    connection file's session name."""
    kc = km.client()
    kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        msg_id = kc.execute(relocation_code(cwd, env), silent=True, store_history=False, allow_stdin=False,
                            user_expressions={"cwd": "__import__('os').getcwd()"})
        if on_sent is not None:
            on_sent(msg_id)

        async def answer() -> dict[str, Any]:
            while True:
                msg = await kc.get_shell_msg()
                if msg["parent_header"].get("msg_id") == msg_id:
                    return msg

        reply = await asyncio.wait_for(answer(), timeout)
    except asyncio.TimeoutError:
        raise RelocationFailed(f"no answer within {timeout}s") from None
    finally:
        kc.stop_channels()
    content = reply["content"]
    if content.get("status") != "ok":
        raise RelocationFailed(f"{content.get('ename')}: {content.get('evalue')}")
    answer = content.get("user_expressions", {}).get("cwd", {})
    try:
        got = ast.literal_eval(answer.get("data", {}).get("text/plain", ""))
    except (ValueError, SyntaxError):
        got = answer
    if got != cwd:
        raise RelocationFailed(f"the kernel answers os.getcwd() = {got!r}, not {cwd!r}")
    km._launch_args["cwd"] = cwd  # jupyter_client's restart relaunches with _launch_args
    km.update_env(env=dict(env))
    km.provisioner.cwd = cwd

    def rewrite() -> None:  # the same ports and key; the notebook's session name
        km._connection_file_written = False
        km.write_connection_file(jupyter_session=env.get("JPY_SESSION_NAME", ""))

    await asyncio.to_thread(rewrite)


@dataclass
class _Pool:
    name: str
    size: int
    members: deque[_Kernel] = field(default_factory=deque)
    watches: dict[str, ExitWatch] = field(default_factory=dict)
    fingerprint: str | None = None
    spec_env: frozenset[str] = frozenset()
    """Variables the kernelspec's env sets: jupyter_client lays them over a request's at launch."""
    hits: int = 0
    misses: int = 0
    discarded: int = 0
    failed_starts: int = 0
    unrelocatable: str | None = None
    wanted: asyncio.Event = field(default_factory=asyncio.Event)


class KernelPool:
    """Idle members per kernelspec; `take` hands one out (or None), refills run in the background,
    one member at a time, `fill_delay` after a take and never while a cold start is in flight."""

    def __init__(self, sizes: Mapping[str, int], fill_delay: float, *,
                 launch: Callable[[str], Awaitable[_Kernel]], discard: Callable[[_Kernel], None],
                 spec: Callable[[str], Awaitable[Mapping[str, Any]]], quiet: Callable[[], Awaitable[None]]):
        self._pools = {name: _Pool(name, n) for name, n in sizes.items() if n > 0}
        self._fill_delay = fill_delay
        self._launch, self._discard, self._spec, self._quiet = launch, discard, spec, quiet
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()
        self._notifying: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        """Start filling (once; never after `close`)."""
        if self._tasks or self._closed:
            return
        for pool in self._pools.values():
            pool.wanted.set()
            self._tasks.append(asyncio.create_task(self._fill(pool), name=f"kernel pool {pool.name}"))

    def pooled(self, name: str) -> bool:
        pool = self._pools.get(name)
        return pool is not None and pool.unrelocatable is None

    def serves(self, name: str, env: Mapping[str, str]) -> bool:
        """Whether a member moved with `env` would be what a cold start with `env` gives: no start-only
        variable differs from the members', and none the kernelspec's own env decides."""
        pool = self._pools[name]
        return not pool_key_env(env) and not pool.spec_env.intersection(env)

    def take(self, name: str) -> _Kernel | None:
        """A live idle member of `name` (the caller relocates it), or None: a miss, counted."""
        pool = self._pools[name]
        member = None
        while pool.members:
            candidate = pool.members.popleft()
            watch = pool.watches.pop(candidate.id, None)
            if watch is not None:
                watch.cancel()
            process = getattr(candidate.km.provisioner, "process", None)
            if process is not None and process.poll() is None:
                member = candidate
                break
            self._drop(pool, candidate, "died while idle")
        if member is None:
            pool.misses += 1
        else:
            pool.hits += 1
        pool.wanted.set()
        self._changed_soon()
        return member

    def miss(self, name: str) -> None:
        """A start for `name` the pool could not serve after all (relocation failed, another env)."""
        pool = self._pools.get(name)
        if pool is not None:
            pool.misses += 1
            self._changed_soon()

    def failed(self, name: str) -> None:
        """The member `take` gave for `name` did not relocate: it is discarded, the start is a miss."""
        pool = self._pools[name]
        pool.hits -= 1
        pool.misses += 1
        pool.discarded += 1
        self._changed_soon()

    def status(self) -> dict[str, Any]:
        return {p.name: {"size": p.size, "idle": len(p.members), "hits": p.hits, "misses": p.misses,
                         "discarded": p.discarded, "failed_starts": p.failed_starts,
                         **({"not_pooled": p.unrelocatable} if p.unrelocatable else {})}
                for p in self._pools.values()}

    def members(self) -> list[_Kernel]:
        return [m for p in self._pools.values() for m in p.members]

    async def wait_full(self) -> None:
        """Until every pooled kernelspec has its idle members."""
        await self.wait_until(lambda _: all(
            len(p.members) >= p.size for p in self._pools.values() if p.unrelocatable is None))

    async def wait_until(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """Until `predicate(self.status())` holds; checked at every change of the pool (unbounded:
        callers bound it)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.status()))

    def _changed_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self._notify())
        self._notifying.add(task)
        task.add_done_callback(self._notifying.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _drop(self, pool: _Pool, member: _Kernel, why: str) -> None:
        log.info("pool %s: member %s %s; replacing it", pool.name, member.id, why)
        pool.discarded += 1
        self._discard(member)
        pool.wanted.set()

    def _died(self, pool: _Pool, member: _Kernel) -> None:
        pool.watches.pop(member.id, None)
        try:
            pool.members.remove(member)
        except ValueError:
            return  # handed out meanwhile
        self._drop(pool, member, "died while idle")
        self._changed_soon()

    async def _fill(self, pool: _Pool) -> None:
        while not self._closed:
            await pool.wanted.wait()
            pool.wanted.clear()
            try:
                spec = await self._spec(pool.name)
            except Exception as e:  # no such kernelspec (any more)
                pool.unrelocatable = f"kernelspec unavailable: {e}"
                log.warning("pool %s: %s", pool.name, pool.unrelocatable)
                await self._notify()
                continue
            pool.unrelocatable = unrelocatable(spec)
            if pool.unrelocatable is not None:
                log.warning("pool %s: not pooled: %s", pool.name, pool.unrelocatable)
                await self._notify()
                continue
            fingerprint = spec_fingerprint(spec)
            if fingerprint != pool.fingerprint:  # the kernelspec changed: members run the old one
                for stale in list(pool.members):
                    pool.members.remove(stale)
                    watch = pool.watches.pop(stale.id, None)
                    if watch is not None:
                        watch.cancel()
                    self._drop(pool, stale, "runs an older kernelspec")
                pool.fingerprint = fingerprint
                pool.spec_env = frozenset(spec.get("env") or {})
            while len(pool.members) < pool.size and not self._closed:
                if self._fill_delay:
                    await asyncio.sleep(self._fill_delay)  # rate limit: a burst of takes, one refill
                await self._quiet()  # a user's cold start has the CPU first
                t0 = time.monotonic()
                try:
                    member = await self._launch(pool.name)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    pool.failed_starts += 1
                    backoff = min(60.0, 2.0 ** min(pool.failed_starts, 6))
                    log.warning("pool %s: a member failed to start (%s); retrying in %.0fs", pool.name, e, backoff)
                    await asyncio.sleep(backoff)
                    continue
                if self._closed:
                    self._discard(member)
                    return
                pool.members.append(member)
                process = member.km.provisioner.process
                pool.watches[member.id] = ExitWatch(process.pid, lambda p=pool, m=member: self._died(p, m))
                log.debug("pool %s: member %s ready in %.2fs", pool.name, member.id, time.monotonic() - t0)
                await self._notify()

    async def close(self) -> list[_Kernel]:
        """Stop filling; return the idle members for the caller to stop."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        members = []
        for pool in self._pools.values():
            for watch in pool.watches.values():
                watch.cancel()
            pool.watches.clear()
            members.extend(pool.members)
            pool.members.clear()
        return members
