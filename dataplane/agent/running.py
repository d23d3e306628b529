"""One node agent put together, and several in one process for the demo.

:class:`Agent` wires the parts: informers on DataSets and PlacementSlices (a large DataSet's
target, assembled by a :class:`~topology.slices.SliceStore`) and an on-demand reader of the peers'
NodeHoldings (only the nodes a copy may come from, each answer kept a second) feed the
:class:`~dataplane.agent.hydrating.ClusterView`; a loop reconciles the disk against it whenever
something changed (or every ``resync_s``) and lets the
:class:`~dataplane.agent.reporting.Reporter` write the holdings; the scrubber re-verifies on its
interval; uvicorn serves the read API on a socket bound before anything starts, so ``port=0``
works and the endpoint in the holdings is the real one. :func:`start_agents` runs N agents in
threads, each with its own root and loopback port (``kbl demo`` uses it), over HTTP or, given
:class:`TlsFiles`, HTTPS with client certificates required (mutual TLS).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn

from dataplane.agent.authenticating import Authenticator, Authenticators, StaticTokens, TokenReviewer
from dataplane.agent.authorizing import READ_PIECES, READ_SHARDS, AccessReviewer, AllowAuthenticated, Authorizer
from dataplane.agent.hydrating import ClusterView, HoldingsCache, Hydrator
from dataplane.agent.layouts import Layout
from dataplane.agent.metrics import AgentMetrics
from dataplane.agent.rebooting import RebootReporter
from dataplane.agent.reporting import Reporter
from dataplane.agent.scrubbing import Scrubber
from dataplane.agent.serving import build_app
from dataplane.agent.settings import AgentSettings
from dataplane.agent.sources import PeerClient
from dataplane.agent.storing import Store
from kube import rbac
from kube.api import DATASETS, NODE_HOLDINGS, NODES, PLACEMENT_SLICES, ApiError, KubeApi, WatchEvent
from kube.watching import Informer, InformerSettings
from topology import labels
from topology.datasets import DataSet
from topology.errors import KblError
from topology.holdings import NodeHoldings
from topology.slices import SliceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Security:
    """How the agent authenticates callers and itself.

    ``token`` gives this agent's own bearer token (for peers); ``static_tokens_file`` lists
    tokens accepted without a TokenReview; ``token_review`` turns the TokenReview on;
    ``access_review`` asks a SubjectAccessReview whether the caller may read (off: every
    authenticated caller may, for tests without RBAC); ``tls_cert``/``tls_key`` serve HTTPS and
    ``tls_client_ca`` requires client certificates signed by that CA (mutual TLS, on top of the
    bearer token); ``peer_ca`` verifies HTTPS peers. With ``tls_cert`` and a ``peer_ca`` file
    the agent presents its certificate to its peers as a client certificate, and checks theirs
    against ``peer_ca`` without checking the host name (peers are called by pod IP, which no
    certificate names: a private CA that signs only agents' certificates is the identity).
    """

    token: Callable[[], str]
    static_tokens_file: str | None = None
    token_review: bool = True
    access_review: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    peer_ca: str | bool = True


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


class Agent:
    """One node's agent (module docstring)."""

    def __init__(
        self, api: KubeApi, settings: AgentSettings, security: Security, *, informer_settings: InformerSettings | None = None
    ) -> None:
        self.api = api
        self.security = security
        self.sock = bind(settings.host, settings.port)
        port = self.sock.getsockname()[1]
        scheme = "https" if security.tls_cert else "http"
        host = settings.advertise_host or settings.host
        self.settings = replace(settings, port=port, scheme=scheme)
        self.endpoint = f"{scheme}://{host if ':' not in host else f'[{host}]'}:{port}"
        self.metrics = AgentMetrics()
        # DataSets are watched; peers' holdings are read on demand, so a holdings write anywhere wakes no agent.
        self.view = ClusterView(HoldingsCache(self._read_holdings, ttl_s=settings.holdings_ttl_s))
        self.store = Store(Layout(Path(settings.root)), capacity_bytes=settings.capacity_bytes, checkpoint_bytes=settings.checkpoint_bytes)
        context = peer_context(security)
        self.peers = PeerClient(security.token, timeout_s=settings.peer_timeout_s, verify=security.peer_ca if context is None else context)
        self._zone_checked: dict[str, float] = {}
        self._zone_lock = threading.Lock()
        self._event_at: dict[tuple[str, str], float] = {}
        self.hydrator = Hydrator(self.settings, self.store, self.view, self.peers, self.metrics, events=self._event, zone_of=self.zone_of)
        self.reporter = Reporter(
            api, self.hydrator, self.endpoint, min_interval_s=settings.report_min_interval_s, heartbeat_s=settings.heartbeat_s
        )
        self.scrubber = Scrubber(self.hydrator, settings.scrub_interval_s)
        self.reboots = RebootReporter(api, settings.node, settings.reboot_required_file, metrics=self.metrics)
        members: list[Authenticator] = []
        if security.static_tokens_file:
            members.append(StaticTokens(security.static_tokens_file))
        if security.token_review:
            members.append(TokenReviewer(api, audience=settings.audience, cache_s=settings.token_cache_s))
        self.auth = Authenticators(members)
        self.authorizer: Authorizer = (
            AccessReviewer(api, cache_s=settings.access_review_cache_s) if security.access_review else AllowAuthenticated()
        )
        if not security.access_review:
            log.warning("access review off: every authenticated caller may read every DataSet (tests and development only)")
        self.app = build_app(self.hydrator, self.auth, self.authorizer)
        isettings = informer_settings or InformerSettings(watch_timeout_s=60, backoff_s=0.2, max_backoff_s=5.0)
        # A sliced DataSet's target comes in PlacementSlices, on a watch stream of its own: the
        # DataSets as parsed (target not assembled) are kept until their slices arrive.
        self.slices = SliceStore()
        self._sliced: dict[str, tuple[DataSet, dict[str, Any]]] = {}
        self.informers = [
            Informer(api, DATASETS, on_event=self._dataset_event, on_relist=self._datasets_relist, settings=isettings),
            Informer(api, PLACEMENT_SLICES, on_event=self._slice_event, on_relist=self._slices_relist, settings=isettings),
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.server: uvicorn.Server | None = None

    # ------------------------------------------------------------- the view
    def _parse(self, obj: Mapping[str, Any]) -> DataSet | None:
        try:
            return DataSet.from_object(obj)
        except KblError as exc:
            log.warning("ignoring an invalid DataSet: %s", exc)
            return None

    def _settle(self, key: str, dataset: DataSet, obj: dict[str, Any]) -> bool:
        """Under the lock: the view's entry of ``key`` for its newest valid version ``dataset``
        (raw ``obj``), its target assembled from the slices held. When a sliced target cannot be
        assembled yet (``None``: its slices have not arrived), the last version acted on stays
        (unless it was another object, another uid) and the key is marked waiting, which keeps
        its pieces on disk (:attr:`ClusterView.waiting`). True when the view changed."""
        view = self.view
        before = view.datasets.get(key)
        prior = self._sliced.get(key)
        if any(d is not None and d.spec.uid != dataset.spec.uid for d in (before, prior[0] if prior else None)):
            self.slices.forget(key)  # re-created (a relist missed the delete): nothing assembled for the old one applies
        if dataset.slices is None:
            self._sliced.pop(key, None)
        else:
            self._sliced[key] = (dataset, obj)
        resolved = self.slices.resolve(dataset)
        if resolved is None:
            changed = key not in view.waiting
            view.waiting.add(key)
            if before is not None and before.spec.uid != dataset.spec.uid:
                del view.datasets[key]
                view.raw.pop(key, None)
                changed = True
            return changed
        view.datasets[key] = resolved
        view.raw[key] = obj
        was_waiting = key in view.waiting
        view.waiting.discard(key)
        # By identity (ShardPlacement's == ignores the pieces): an index that did not change
        # resolves to the very target assembled before, with the spec it was parsed with.
        same = (
            before is not None
            and before.placement is resolved.placement
            and before.spec is resolved.spec
            and before.transfers is resolved.transfers
        )
        return was_waiting or not same

    def _forget(self, key: str) -> None:
        """Under the lock: a DataSet that is gone."""
        self.view.datasets.pop(key, None)
        self.view.raw.pop(key, None)
        self.view.invalid.discard(key)
        self.view.waiting.discard(key)
        self._sliced.pop(key, None)
        self.slices.forget(key)

    def _datasets_relist(self, items: Iterable[Mapping[str, Any]]) -> None:
        parsed: dict[str, tuple[DataSet, dict[str, Any]]] = {}
        invalid = set()
        for obj in items:
            ds = self._parse(obj)
            if ds is not None:
                parsed[ds.key] = (ds, dict(obj))
            else:
                invalid.add(_key(obj))
        with self.hydrator.lock:
            view = self.view
            # An invalid key keeps acting on its last valid version, if any (and waits for its slices).
            for key in (view.datasets.keys() | view.waiting | self._sliced.keys()) - parsed.keys() - invalid:
                self._forget(key)
            view.invalid = invalid
            for key, (ds, obj) in parsed.items():
                self._settle(key, ds, obj)
        self.hydrator.changed.set()

    def _dataset_event(self, event: WatchEvent) -> None:
        key = _key(event.object)
        ds = None if event.type == "DELETED" else self._parse(event.object)
        with self.hydrator.lock:
            if event.type == "DELETED":
                self._forget(key)
            elif ds is not None:
                self._settle(ds.key, ds, dict(event.object))
                self.view.invalid.discard(key)
            else:  # keep acting on the last valid version, if any
                self.view.invalid.add(key)
        self.hydrator.changed.set()

    def _slice_event(self, event: WatchEvent) -> None:
        """A PlacementSlice event: held, and the DataSet it belongs to settled again (its target
        assembled once every slice its index names is held)."""
        with self.hydrator.lock:
            key = self.slices.apply(event.type, event.object)
            changed = key is not None and key in self._sliced and self._settle(key, *self._sliced[key])
        if changed:
            self.hydrator.changed.set()

    def _slices_relist(self, items: Iterable[Mapping[str, Any]]) -> None:
        changed = False
        with self.hydrator.lock:
            for key in self.slices.replace(items) & self._sliced.keys():
                changed = self._settle(key, *self._sliced[key]) or changed
        if changed:
            self.hydrator.changed.set()

    def _read_holdings(self, node: str) -> NodeHoldings | None:
        """One node's holdings (``None`` when it has none, or they do not parse)."""
        self.metrics.api_reads.labels("nodeholdings").inc()
        try:
            obj = self.api.get(NODE_HOLDINGS, node)
        except ApiError as exc:
            log.warning("holdings of %s: %s", node, exc)
            return None
        if obj is None:
            return None
        try:
            return NodeHoldings.from_object(obj)
        except KblError:
            return None

    def zone_of(self, node: str) -> str:
        """A node's zone label (asked at most once a minute per node; ``""`` when unknown).

        Look-ups are serialised: a caller never sees a node as "checked" before its zone is known.
        """
        with self._zone_lock:
            now = time.monotonic()
            if now - self._zone_checked.get(node, -1e9) > 60.0:
                try:
                    self.metrics.api_reads.labels("nodes").inc()
                    obj = self.api.get(NODES, node)
                except ApiError:
                    obj = None
                node_labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
                zone = str(node_labels.get(labels.ZONE) or node_labels.get(labels.LEGACY_ZONE) or "")
                with self.hydrator.lock:
                    self.view.zones[node] = zone
                self._zone_checked[node] = now
            return self.view.zones.get(node, "")

    def _event(self, key: str, reason: str, message: str, type_: str) -> None:
        now = time.monotonic()
        if now - self._event_at.get((key, reason), -1e9) < 30.0:
            return
        self._event_at[(key, reason)] = now
        with self.hydrator.lock:
            raw = self.view.raw.get(key)
        if raw is None:
            return
        try:
            self.api.create_event(raw, reason=reason, message=message, type="Warning" if type_ == "Warning" else "Normal")
        except ApiError as exc:
            log.warning("event %s on %s: %s", reason, key, exc)

    # -------------------------------------------------------------- running
    def _synced(self) -> bool:
        if not self.view.synced and all(i.synced.is_set() for i in self.informers):
            self.view.synced = True
        return self.view.synced

    def _heartbeat(self) -> None:
        """The holdings' heartbeat on a thread of its own: a long pass of the loop never makes a live agent
        look silent (the reconciler repairs the pieces of an agent silent past its TTL)."""
        while not self._stop.wait(max(0.5, min(5.0, self.settings.heartbeat_s / 3))):
            if not self.view.synced:
                continue
            try:
                self.reporter.maybe_write()
                self.reboots.check()
            except Exception:
                log.exception("agent heartbeat")

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.hydrator.changed.clear()
            try:
                if self._synced():
                    self.hydrator.reconcile()
                    self.reporter.maybe_write()
            except Exception:
                log.exception("agent loop")
            self.hydrator.changed.wait(min(self.settings.resync_s, self.settings.report_min_interval_s))
        with contextlib.suppress(Exception):
            self.reporter.maybe_write(force=True)

    def start(self, *, serve: bool = True) -> Agent:
        """Start the informers, the loop, the scrubber and (unless ``serve=False``) the server thread."""
        for informer in self.informers:
            informer.start()
        for target, name in ((self._loop, "loop"), (self._heartbeat, "heartbeat"), (lambda: self.scrubber.run(self._stop), "scrub")):
            thread = threading.Thread(target=target, name=f"agent-{self.settings.node}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if serve:
            self.server = uvicorn.Server(self._config())
            thread = threading.Thread(
                target=self.server.run, kwargs={"sockets": [self.sock]}, name=f"agent-{self.settings.node}-http", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def _config(self) -> uvicorn.Config:
        import ssl

        kwargs: dict[str, Any] = {}
        if self.security.tls_cert:
            kwargs.update(ssl_certfile=self.security.tls_cert, ssl_keyfile=self.security.tls_key)
            if self.security.tls_client_ca:
                kwargs.update(ssl_ca_certs=self.security.tls_client_ca, ssl_cert_reqs=ssl.CERT_REQUIRED)
        return uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off", **kwargs)

    def serve_forever(self) -> None:
        """Serve in the calling thread (the CLI: signals stop the server), then stop the rest."""
        self.start(serve=False)
        self.server = uvicorn.Server(self._config())
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.stop()

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._synced() and (self.server is None or self.server.started):
                return True
            time.sleep(0.02)
        return False

    def _abort_connections(self) -> None:
        """Drop the connections the server still waits for at shutdown: peers' idle keep-alive
        TLS connections never answer its close_notify while their client is open (the server
        would wait 30 s for each)."""
        server = self.server
        if server is None or not server.servers:
            return
        loop = server.servers[0].get_loop()
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(transport.abort)

    def stop(self) -> None:
        self._stop.set()
        self.hydrator.changed.set()
        if self.server is not None:
            self.server.should_exit = True
        for informer in self.informers:
            informer.stop(5.0)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(2.0 if thread.name.endswith("-http") else 10)
                if thread.is_alive() and thread.name.endswith("-http"):
                    self._abort_connections()
                    thread.join(10)
        self.hydrator.close()
        self.peers.close()
        with contextlib.suppress(OSError):
            self.sock.close()


def peer_context(security: Security) -> ssl.SSLContext | None:
    """The TLS context of calls to peers when ``peer_ca`` is a CA file: peers verified against it
    (not by host name, see :class:`Security`), and this agent's certificate, when it has one,
    presented as its client certificate. ``None`` when ``peer_ca`` is a bool (system CAs or no
    verification: plain ``verify``)."""
    if not isinstance(security.peer_ca, str):
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=security.peer_ca)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    if security.tls_cert and security.tls_key:
        context.load_cert_chain(security.tls_cert, security.tls_key)
    return context


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of :func:`start_agents` over mutual TLS: one certificate (server and client use)
    valid for 127.0.0.1, its key, and the CA that signed it (and signs the readers' certificates)."""

    cert: str
    key: str
    ca: str


#: The identity of :func:`start_agents`' token: the agent's ServiceAccount as the chart names it.
DEMO_USER = "system:serviceaccount:kbl-system:kbl-agent"
DEMO_ROLE = "kbl-agent-reads"


def grant_demo_reads(api: KubeApi) -> None:
    """What the chart grants the agent's ServiceAccount to read data (``get`` on DataSets and on
    ``datasets/pieces``), created in ``api`` for :data:`DEMO_USER` (already there: left as is)."""
    rules = [{"apiGroups": [DATASETS.group], "resources": [p.resource], "verbs": [p.verb]} for p in (READ_SHARDS, READ_PIECES)]
    rbac.grant(api, DEMO_ROLE, rules, [{"kind": "ServiceAccount", "namespace": "kbl-system", "name": "kbl-agent"}])


def start_agents(
    api: KubeApi,
    nodes: Sequence[str],
    root: str | Path,
    *,
    token: str,
    settings: Mapping[str, Any] | None = None,
    token_review: bool = False,
    access_review: bool = True,
    tls: TlsFiles | None = None,
) -> list[Agent]:
    """Run one agent per node in this process: roots ``<root>/<node>``, loopback ports.

    Every agent accepts ``token`` (written to ``<root>/.tokens`` as the identity
    :data:`DEMO_USER`) and presents it to its peers. With ``access_review`` (the default) the
    agents ask ``api`` a SubjectAccessReview for every read, and :func:`grant_demo_reads` grants
    that identity what the chart grants the agent: the in-memory API answers from that RBAC
    (:mod:`kube.rbac`), so a reader with another token and no binding gets ``403``. With ``tls``
    they serve HTTPS, require client certificates signed by ``tls.ca`` and present ``tls.cert``
    to each other. Stop them with ``agent.stop()`` each.
    """
    base = Path(root)
    base.mkdir(parents=True, exist_ok=True)
    tokens = base / ".tokens"
    tokens.write_text(f'{token},{DEMO_USER},uid-kbl-demo,"system:serviceaccounts,system:serviceaccounts:kbl-system"\n')
    tokens.chmod(0o600)
    if access_review:
        grant_demo_reads(api)
    security = Security(
        token=lambda: token,
        static_tokens_file=str(tokens),
        token_review=token_review,
        access_review=access_review,
        tls_cert=tls.cert if tls else None,
        tls_key=tls.key if tls else None,
        tls_client_ca=tls.ca if tls else None,
        peer_ca=tls.ca if tls else True,
    )
    agents = []
    for node in nodes:
        s = AgentSettings(node=node, root=str(base / node), host="127.0.0.1", port=0, **dict(settings or {}))
        agents.append(Agent(api, s, security).start())
    for agent in agents:
        agent.wait_ready()
    return agents
