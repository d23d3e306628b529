"""Who may read: bearer tokens checked by a TokenReview, or a static list for tests; never anonymous.

In a cluster every reader (a pod, a peer agent) presents a projected ServiceAccount token bound
to the agent's audience (``kbl-agent``). :class:`TokenReviewer` asks the API server
(``authentication.k8s.io/v1`` TokenReview, RBAC ``tokenreviews: create``) whether it is valid for
that audience and caches the answer for ``cache_s`` seconds (valid and invalid alike), so a busy
reader costs one review per interval. :class:`StaticTokens` accepts the tokens of a file (one
per line), for tests and development. :class:`Authenticators` accepts a token that any of its
members accepts. A request without a token, or with a refused one, gets ``401``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from kube.api import TOKEN_REVIEWS, ApiError, KubeApi

log = logging.getLogger(__name__)


class Authenticator(Protocol):
    def authenticate(self, token: str) -> str | None:
        """The caller's user name when ``token`` is accepted, else ``None``."""
        ...


class StaticTokens:
    """Tokens listed in a file, one per line (re-read when the file changes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._mtime = -1.0
        self._tokens: set[str] = set()

    def _load(self) -> set[str]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return set()
        if mtime != self._mtime:
            self._tokens = {line.strip() for line in self.path.read_text().splitlines() if line.strip()}
            self._mtime = mtime
        return self._tokens

    def authenticate(self, token: str) -> str | None:
        return "static-token" if token and token in self._load() else None


class TokenReviewer:
    """TokenReview through the Kubernetes API, answers cached for ``cache_s`` seconds."""

    def __init__(self, api: KubeApi, *, audience: str, cache_s: float = 10.0, max_entries: int = 10_000) -> None:
        self.api = api
        self.audience = audience
        self.cache_s = cache_s
        self.max_entries = max_entries
        self.reviews = 0
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str) -> str | None:
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()  # never keep the token itself
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and hit[0] > now:
                return hit[1]
        user = self._review(token)
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[digest] = (now + self.cache_s, user)
        return user

    def _review(self, token: str) -> str | None:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "metadata": {"name": "kbl-agent"},
            "spec": {"token": token, "audiences": [self.audience]},
        }
        self.reviews += 1
        try:
            answer = self.api.create(TOKEN_REVIEWS, body)
        except ApiError as exc:
            log.warning("TokenReview failed: %s", exc)
            return None
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None
        audiences = status.get("audiences")
        if audiences is not None and self.audience not in audiences:
            return None
        return str((status.get("user") or {}).get("username") or "authenticated")


class Authenticators:
    """Accepts what any member accepts (static tokens first: they cost no API call)."""

    def __init__(self, members: Sequence[Authenticator]) -> None:
        self.members = list(members)

    def authenticate(self, token: str) -> str | None:
        for member in self.members:
            user = member.authenticate(token)
            if user is not None:
                return user
        return None


class TokenFile:
    """This agent's own token, read from disk (a projected token is rotated by the kubelet)."""

    def __init__(self, path: str | Path, *, reread_s: float = 60.0) -> None:
        self.path = Path(path)
        self.reread_s = reread_s
        self._token = ""
        self._at = 0.0

    def __call__(self) -> str:
        now = time.monotonic()
        if not self._token or now - self._at > self.reread_s:
            try:
                self._token = self.path.read_text().strip().splitlines()[0].strip()
            except (OSError, IndexError):
                self._token = ""
            self._at = now
        return self._token
