"""``kbl serve``: the scheduler extender over HTTP(S), fed by a snapshot or by live watches."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import threading
from pathlib import Path

import yaml

from extender import narrowing
from extender.serving import WATCHED, ServerOptions, serve, start_informers
from extender.settings import ExtenderSettings, normalize_prefix
from extender.state import ClusterState
from kube.client import KubeClient
from kube.watching import InformerSettings
from topology.errors import KblError
from topology.snapshots import load_snapshot


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--snapshot", metavar="FILE", help="serve from a snapshot file instead of watching the cluster")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    parser.add_argument("--port", type=int, help="port (default 8443 with TLS, else 8080)")
    parser.add_argument("--url-prefix", default="", help="path prefix of the verbs, matching urlPrefix in the scheduler config")
    parser.add_argument("--tls-cert", metavar="C", help="PEM certificate (with --tls-key: serve HTTPS)")
    parser.add_argument("--tls-key", metavar="K", help="PEM private key")
    parser.add_argument("--kubeconfig", metavar="F", help="kubeconfig to use outside a cluster")
    parser.add_argument("--no-bind", action="store_true", help="answer /bind with an error (when bindVerb is not configured)")
    parser.add_argument(
        "--scheduler-name",
        default=os.environ.get("KBL_SCHEDULER_NAME"),
        help="schedulerName of kbl pods, the only ones the webhook routes (env KBL_SCHEDULER_NAME; default kbl-scheduler)",
    )
    parser.add_argument(
        "--exhaustive-scheduler-name",
        default=os.environ.get("KBL_EXHAUSTIVE_SCHEDULER_NAME"),
        help="the 100%%-scoring profile the webhook routes pods it cannot narrow by name to (env KBL_EXHAUSTIVE_SCHEDULER_NAME; "
        "default: no routing)",
    )
    parser.add_argument(
        "--narrowing",
        action="store_true",
        default=os.environ.get("KBL_NARROWING", "").lower() in ("1", "true", "yes"),
        help="gate preferred data pods at creation and narrow them by name before kube-scheduler samples, instead of"
        " routing them to the exhaustive profile (env KBL_NARROWING; needs the API server, see extender/narrowing.py)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="YAML or JSON file of extender settings (costs, hotspotThreshold, batchLimit, ...)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(args: argparse.Namespace) -> int:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise KblError("--tls-cert and --tls-key go together")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    port = args.port or (8443 if args.tls_cert else 8080)
    options = ServerOptions(host=args.host, port=port, tls_cert=args.tls_cert, tls_key=args.tls_key, log_level=args.log_level)
    if args.snapshot:
        if settings.narrowing:
            logging.getLogger(__name__).warning("--narrowing needs the API server: ignored with --snapshot (pods are routed)")
        snapshot = load_snapshot(args.snapshot, rack_label=settings.rack_label)
        state = ClusterState.from_snapshot(snapshot, settings)
        serve(state, options)
        return 0
    api = KubeClient.from_config(args.kubeconfig)
    lists = api.typed_reader(settings.rack_label)  # the informers only type what they list; binds stay raw
    state = ClusterState(settings, expect=WATCHED)
    informers = start_informers(state, lists, settings=InformerSettings())
    controller = None
    stop = threading.Event()
    if settings.narrowing:  # the gate controller, leader-elected among the replicas (extender/narrowing.py)
        controller, extra = narrowing.start(state, api, stop, informer_settings=InformerSettings())
        informers = [*informers, *extra]
    try:
        serve(state, options, api=api, informers=informers, narrowing=controller)
    finally:
        stop.set()
    return 0


def settings_from_args(args: argparse.Namespace) -> ExtenderSettings:
    """The extender's settings: the ``--config`` file, then the command-line flags over it.

    Raises
    ------
    KblError
        If the file is invalid, or the scheduler names are empty or equal.
    """
    settings = load_settings(args.config)
    changes: dict[str, object] = {}
    if args.url_prefix:
        changes["url_prefix"] = normalize_prefix(args.url_prefix)
    if args.no_bind:
        changes["bind_enabled"] = False
    if args.scheduler_name:
        changes["scheduler_name"] = args.scheduler_name
    if args.exhaustive_scheduler_name:
        changes["exhaustive_scheduler_name"] = args.exhaustive_scheduler_name
    if getattr(args, "narrowing", False):
        changes["narrowing"] = True
        from_env = (
            ("KBL_NARROW_CANDIDATES", "narrow_candidates", int),
            ("KBL_NARROW_RELEASE_TIMEOUT_S", "narrow_release_timeout_s", float),
        )
        for env, key, kind in from_env:
            if os.environ.get(env):
                try:
                    changes[key] = kind(os.environ[env])
                except ValueError:
                    raise KblError(f"kbl serve: {env}={os.environ[env]!r} is not a number") from None
    try:
        return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
    except ValueError as exc:
        raise KblError(f"kbl serve: {exc}") from None


def load_settings(path: str | None) -> ExtenderSettings:
    """Extender settings from a ``--config`` file (YAML or JSON), or the defaults.

    Raises
    ------
    KblError
        If the file cannot be read or parsed, or names an unknown or invalid setting.
    """
    if not path:
        return ExtenderSettings()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise KblError(f"cannot read settings {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise KblError(f"settings {path} is not YAML or JSON: {exc}") from None
    if data is None:
        return ExtenderSettings()
    if not isinstance(data, dict):
        raise KblError(f"settings {path}: expected a mapping of setting names")
    return ExtenderSettings.from_mapping(data, source=str(path))
