"""The Pod Security Standards' ``restricted`` profile (Kubernetes v1.30+, "latest"), rule by rule, as
the PodSecurity admission plugin applies it to a pod spec (and to a workload's pod template).

Source: https://kubernetes.io/docs/concepts/security/pod-security-standards/ . Every baseline
control, then the restricted ones: volume types, privilege escalation, non-root, seccomp,
capabilities. Returns the violations, ``[]`` when the pod passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
NON_VOLUME_KEYS = {"name"}


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]


def restricted_violations(spec: Mapping[str, Any]) -> list[str]:
    """What keeps a pod spec out of a namespace enforcing ``restricted`` (``[]``: admitted)."""
    out: list[str] = []
    pod = spec.get("securityContext") or {}
    containers = _containers(spec)
    # ---- baseline
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"{key}=true")
    if (pod.get("windowsOptions") or {}).get("hostProcess"):
        out.append("hostProcess")
    for v in spec.get("volumes", []):
        if "hostPath" in v:
            out.append(f"volume {v['name']}: hostPath")
        kinds = set(v) - NON_VOLUME_KEYS
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volume {v['name']}: type {sorted(kinds - RESTRICTED_VOLUMES)} not allowed")
    for sysctl in pod.get("sysctls", []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"sysctl {sysctl.get('name')}")
    for context in [pod, *(c.get("securityContext") or {} for c in containers)]:
        se = context.get("seLinuxOptions") or {}
        if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            out.append("seLinuxOptions")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append("seccompProfile Unconfined")
        if (context.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            out.append("appArmorProfile")
    pod_non_root = pod.get("runAsNonRoot") is True
    pod_seccomp = (pod.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    if pod.get("runAsUser") == 0:
        out.append("pod runAsUser=0")
    for c in containers:
        name = c.get("name", "?")
        ctx = c.get("securityContext") or {}
        if ctx.get("privileged"):
            out.append(f"{name}: privileged")
        if ctx.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        caps = ctx.get("capabilities") or {}
        added = set(caps.get("add") or [])
        if not added <= BASELINE_CAPABILITIES:
            out.append(f"{name}: capabilities {sorted(added - BASELINE_CAPABILITIES)}")
        # ---- restricted
        if ctx.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        non_root = ctx.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            out.append(f"{name}: runAsNonRoot must be true")
        if ctx.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser=0")
        seccomp = (ctx.get("seccompProfile") or {}).get("type")
        if not (seccomp in ("RuntimeDefault", "Localhost") or (seccomp is None and pod_seccomp)):
            out.append(f"{name}: seccompProfile RuntimeDefault or Localhost")
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities must drop ALL")
        if not added <= {"NET_BIND_SERVICE"}:
            out.append(f"{name}: only NET_BIND_SERVICE may be added")
    return out
