"""Who may read: bearer tokens checked by a TokenReview, or a static list for tests; never anonymous.

In a cluster every reader (a pod, a peer agent) presents a projected ServiceAccount token bound
to the agent's audience (``kbl-agent``). :class:`TokenReviewer` asks the API server
(``authentication.k8s.io/v1`` TokenReview, RBAC ``tokenreviews: create``) whether it is valid for
that audience and caches the answer for ``cache_s`` seconds (valid and invalid alike), so a busy
reader costs one review per interval. :class:`StaticTokens` accepts the tokens of a file, for
tests and development, in kube-apiserver's static token file format
(``token,user,uid,"group1,group2"``; a line with the token alone has :data:`STATIC_USER`).
:class:`Authenticators` accepts a token that any of its members accepts. A request without a
token, or with a refused one, gets ``401``.

Authentication yields an :class:`Identity` (user name, uid, groups as TokenReview's
``status.user`` gives them); what that identity may read is :mod:`.authorizing`'s question.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kube.api import TOKEN_REVIEWS, ApiError, KubeApi

log = logging.getLogger(__name__)


#: The identity of a static token given alone on its line (no user, uid or groups).
STATIC_USER = "kbl:static-token"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token belongs to, as TokenReview's ``status.user`` says (what a SubjectAccessReview asks about)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()


class Authenticator(Protocol):
    def authenticate(self, token: str) -> Identity | None:
        """The caller's identity when ``token`` is accepted, else ``None``."""
        ...


def parse_static_tokens(text: str) -> dict[str, Identity]:
    """kube-apiserver's static token file: ``token,user,uid[,"group1,group2"]`` per line (CSV).

    A line with the token alone is accepted too (the older one-token-per-line form) and has the
    identity :data:`STATIC_USER`, no uid, no groups. Blank lines and ``#`` comments are skipped.
    """
    out: dict[str, Identity] = {}
    for row in csv.reader(io.StringIO(text), skipinitialspace=True):
        fields = [f.strip() for f in row]
        if not fields or not fields[0] or fields[0].startswith("#"):
            continue
        token, user, uid = fields[0], fields[1] if len(fields) > 1 and fields[1] else STATIC_USER, fields[2] if len(fields) > 2 else ""
        groups = tuple(g.strip() for g in fields[3].split(",") if g.strip()) if len(fields) > 3 else ()
        out[token] = Identity(user, uid, groups)
    return out


class StaticTokens:
    """Tokens listed in a file (:func:`parse_static_tokens`), re-read when the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._mtime = -1.0
        self._tokens: dict[str, Identity] = {}

    def _load(self) -> dict[str, Identity]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return {}
        if mtime != self._mtime:
            self._tokens = parse_static_tokens(self.path.read_text())
            self._mtime = mtime
        return self._tokens

    def authenticate(self, token: str) -> Identity | None:
        return self._load().get(token) if token else None


class TokenReviewer:
    """TokenReview through the Kubernetes API, answers cached for ``cache_s`` seconds."""

    def __init__(self, api: KubeApi, *, audience: str, cache_s: float = 10.0, max_entries: int = 10_000) -> None:
        self.api = api
        self.audience = audience
        self.cache_s = cache_s
        self.max_entries = max_entries
        self.reviews = 0
        self._cache: dict[str, tuple[float, Identity | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str) -> Identity | None:
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

    def _review(self, token: str) -> Identity | None:
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
        user = status.get("user") or {}
        return Identity(str(user.get("username") or ""), str(user.get("uid") or ""), tuple(str(g) for g in user.get("groups") or ()))


class Authenticators:
    """Accepts what any member accepts (static tokens first: they cost no API call)."""

    def __init__(self, members: Sequence[Authenticator]) -> None:
        self.members = list(members)

    def authenticate(self, token: str) -> Identity | None:
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
