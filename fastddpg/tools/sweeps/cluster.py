"""Ray: import it, start a private local Ray or connect to a cluster (--address), check shared storage."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ...core.config import ConfigError, first_line
from .spec import INSTALL_HINT, SweepSpec


def require_ray() -> Any:
    """The ``ray`` module with Tune, or a one-line ConfigError saying how to install it."""
    try:
        import ray
        import ray.tune
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> bool:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


TOKEN_AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"  # Ray's, at every new local Ray


class _DropTokenAuthNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_AUTH_NOTICE)


@contextlib.contextmanager
def _without_token_auth_notice() -> Iterator[None]:
    """While starting the private local Ray: drop Ray's log line that it enabled token authentication (its default
    for a new local Ray, which fastddpg starts and stops itself; nothing for the user to do). Authentication stays
    as Ray sets it, and Ray's other lines, such as its warning when authentication is disabled, still show."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    drop = _DropTokenAuthNotice()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def connect(spec: SweepSpec) -> bool:
    """Start a private local Ray in this process (no ``--address``) or connect to the cluster at ``--address``
    (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``). An unreachable address is a one-line ConfigError. Returns
    whether this call started Ray (and so should shut it down). A Ray already initialized (e.g. by your own
    ``ray.init``) is used as it is."""
    ray = require_ray()
    address = spec.address
    hint = ("start one with `ray start --head` (workers: `ray start --address=HEAD:6379`) or check the address")
    # checked before a Ray of this process is reused: a wrong --address is refused whatever Ray runs here
    if address not in (None, "auto") and not _reachable(address):
        raise ConfigError(f"--address {address}: no Ray cluster answers there; {hint}.")
    if ray.is_initialized():
        return False
    from ...core.threads import usable_cores

    if address is None:  # its workers inherit this process's environment (OpenMP's wait policy included)
        with _without_token_auth_notice():
            ray.init(address="local", num_cpus=usable_cores(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        return True
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as e:  # ConnectionError, RuntimeError, grpc errors: all mean "no cluster here"
        first = first_line(e) or type(e).__name__
        raise ConfigError(f"--address {address}: cannot connect to a Ray cluster ({first}); {hint}.") from None
    return True


def check_shared_storage(root: Path, nodes: Sequence[dict[str, Any]], sees: Callable[[dict[str, Any], str], bool],
                         given: bool) -> None:
    """With more than one alive node, every node must see ``root`` (the trials write their run directories and
    Tune its state there): a marker file written here must exist for ``sees(node, path)`` on each node."""
    alive = [n for n in nodes if n.get("Alive", True)]
    if len(alive) <= 1:
        return
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".shared-check-{os.getpid()}-{time.time_ns()}"
    marker.write_text("fastddpg")
    try:
        # address and node id: nodes on one machine share the address
        blind = [f"{n.get('NodeManagerAddress', '?')} (node {str(n.get('NodeID', '?'))[:12]})" for n in alive
                 if not sees(n, str(marker))]
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()
    if blind:
        what = "--storage" if given else "--out (the default storage)"
        raise ConfigError(f"{what} {root} is not shared storage: the cluster has {len(alive)} nodes and "
                          f"{', '.join(blind)} cannot see it; give --storage a path mounted on every node (NFS).")


def _ray_sees(node: dict[str, Any], path: str) -> bool:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0)
    def exists(p: str) -> bool:
        return os.path.exists(p)

    ref = exists.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(path)
    try:
        return bool(ray.get(ref, timeout=120))
    except Exception:
        return False

