"""The live channel's view of the process: its ``Services`` plus this process's hub and
its door (``Admission``).

``app.py`` composes it (both are created there, not in ``open_services``, so the services
below know nothing of the live channel) and installs it for the routes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from realtube_push.observability import Metrics
from realtube_push.push.admission import Admission
from realtube_push.push.hub import Hub
from realtube_push.push.position import LogPosition
from realtube_push.push.replay import ReplayCache
from realtube_push.services import Services
from realtube_push.web.request import services


@dataclass
class LiveServices(Services):
    """``Services``, the hub that fans this process's live sessions out, the admission that
    decides which connections may open, and what the handshakes of resuming clients share
    (the log's position, replay pages)."""

    hub: Hub
    admission: Admission
    log_position: LogPosition
    replay_cache: ReplayCache

    @classmethod
    def around(cls, svc: Services, hub: Hub, admission: Admission) -> LiveServices:
        """``svc``'s resources (the same objects, not copies) with ``hub`` and ``admission``."""
        return cls(
            **{f.name: getattr(svc, f.name) for f in fields(svc)},
            hub=hub,
            admission=admission,
            log_position=LogPosition(svc.pool, svc.metrics),
            replay_cache=ReplayCache(svc),
        )


def live_services() -> LiveServices:
    """The running process's services, inside a live route's request."""
    svc = services()
    if not isinstance(svc, LiveServices):
        raise TypeError("the app was composed without the live channel (see app.py)")
    return svc


def live_readiness(svc: LiveServices) -> dict[str, Any]:
    """The live channel's section of ``/health/ready``: whether it accepts connections, how
    many it holds, where its hub stands in the log, and its delivery counters."""
    hub, m = svc.hub, svc.metrics
    return {
        "status": "accepting" if hub.accepting else "draining",
        "connections": dict(hub.connections_by_transport()),
        "epoch": hub.epoch,
        "seq": hub.seq,
        "deltas_published": _sample(m, "realtube_live_deltas_published_total"),
        "deltas_delivered": _sample(m, "realtube_live_deltas_delivered_total"),
        "deltas_conflated": _sample(m, "realtube_live_deltas_conflated_total"),
        "frames_sent": _sample(m, "realtube_live_frames_sent_total"),
        "backfills": _sample(m, "realtube_live_backfills_total"),
    }


def _sample(metrics: Metrics, name: str) -> int:
    return int(metrics.registry.get_sample_value(name) or 0)
