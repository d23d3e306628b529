{{/* Labels every kbl object carries; "component" names the part (extender, scheduler, controller). */}}
{{- define "kbl.labels" -}}
app.kubernetes.io/name: kbl
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: kbl
{{- end -}}

{{/* The subset of the labels that selects one component's pods (never changes between versions). */}}
{{- define "kbl.selectorLabels" -}}
app.kubernetes.io/name: kbl
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Pod-level hardening shared by every kbl pod. */}}
{{- define "kbl.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level hardening shared by every kbl container. */}}
{{- define "kbl.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The extender's in-cluster DNS name, as the scheduler calls it and its certificate names it. */}}
{{- define "kbl.extenderHost" -}}
{{ .Release.Name }}-extender.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* Spread a component's replicas over zones and hosts (best effort). */}}
{{- define "kbl.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "kbl.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "kbl.selectorLabels" . | nindent 8 }}
{{- end -}}

{{/* percentageOfNodesToScore of kbl's default profile: the value, else 0 (adaptive) when the webhook routes pods, else 100. */}}
{{- define "kbl.percentageOfNodesToScore" -}}
{{- if kindIs "invalid" .Values.scheduler.percentageOfNodesToScore -}}
{{ .Values.webhook.enabled | ternary 0 100 }}
{{- else -}}
{{ .Values.scheduler.percentageOfNodesToScore }}
{{- end -}}
{{- end -}}

{{/* The webhook needs a CA to call the extender: cert-manager's injection or webhook.caBundle. */}}
{{- define "kbl.webhookCheck" -}}
{{- if and .Values.webhook.enabled (not .Values.tls.certManager.enabled) (not .Values.webhook.caBundle) -}}
{{- fail "webhook.enabled needs the extender's CA: set tls.certManager.enabled=true (cert-manager injects it) or webhook.caBundle to the base64 PEM of ca.crt (manifests/tls/make-certs.sh prints it)" -}}
{{- end -}}
{{- end -}}

{{/* The KubeSchedulerConfiguration of kbl-scheduler (the comments explain each choice; values.yaml has the long form). */}}
{{- define "kbl.schedulerConfig" -}}
{{- $ext := .Values.scheduler.extender -}}
{{- $percentage := include "kbl.percentageOfNodesToScore" . | int -}}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: true
  resourceLock: leases
  resourceName: {{ .Values.scheduler.name }}
  resourceNamespace: {{ .Release.Namespace }}
{{- if eq $percentage 100 }}
# Look at every feasible node: otherwise the nodes holding a pod's data may never be offered.
{{- else if eq $percentage 0 }}
# Adaptive sampling (50% - nodes/125, at least 5%) for kbl-scheduler's own pods: the webhook
# narrows required-locality pods to their holders by name and routes the pods it cannot narrow
# to the exhaustive profile below, so no data holder is hidden from them.
{{- else }}
# Sampling: the scheduler stops after this share of the nodes is feasible; pods the webhook
# cannot narrow by name are routed to the exhaustive profile below.
{{- end }}
percentageOfNodesToScore: {{ $percentage }}
profiles:
  - schedulerName: {{ .Values.scheduler.name }}
  # The same scheduler scoring every feasible node, for pods whose data holders must all be seen
  # (with webhook.enabled, the pods the webhook cannot narrow by name; a pod may also name it).
  - schedulerName: {{ .Values.scheduler.exhaustiveName }}
    percentageOfNodesToScore: 100
# Extenders are global: both profiles call kbl.
extenders:
  - urlPrefix: https://{{ include "kbl.extenderHost" . }}:{{ .Values.extender.port }}{{ .Values.extender.urlPrefix }}
    filterVerb: filter
    prioritizeVerb: prioritize
    {{- if $ext.preempt }}
    # The extender drops candidate nodes its filter would reject, so no pod is evicted in vain.
    preemptVerb: preempt
    {{- end }}
    {{- if $ext.bind }}
    bindVerb: bind
    {{- else }}
    # bindVerb: bind    # scheduler.extender.bind=true: the extender binds (needs pods/binding RBAC)
    {{- end }}
    # Final score per node = in-tree plugin sum + extender score (0..10) x weight x 10:
    # {{ $ext.weight }} x 10 x 10 = {{ mul $ext.weight 100 }} for a full locality difference.
    weight: {{ $ext.weight }}
    # Only node names travel (the extender keeps its own node cache).
    nodeCacheCapable: true
    httpTimeout: {{ $ext.httpTimeout }}
    enableHTTPS: true
    tlsConfig:
      caFile: /etc/kbl/extender-ca/ca.crt
      serverName: {{ include "kbl.extenderHost" . }}
    # false: an unreachable extender fails the attempt and the pod retries (locality is never
    # silently dropped); true would schedule without kbl.
    ignorable: {{ $ext.ignorable }}
    {{- $managed := $ext.managedResources }}
    {{- if and .Values.webhook.enabled .Values.webhook.narrowing.enabled }}
    {{- $managed = append $ext.managedResources (dict "name" "kbl.io/extender" "ignoredByScheduler" true) }}
    # Narrowing: only pods requesting kbl.io/extender reach the extender. The webhook gives it
    # (1, requests = limits) to every kbl pod it does not gate; a pod the gate controller narrows
    # never has it, so kube-scheduler ranks its K candidates by the preferred terms the controller
    # wrote, with no extender call. ignoredByScheduler: NodeResourcesFit skips it (no node
    # advertises it) and the kubelet drops requests of extended resources its node lacks.
    # With the webhook down (failurePolicy Ignore) pods get neither gate nor resource: they
    # schedule on kube-scheduler's own plugins, without kbl (manifests/README.md).
    {{- end }}
    {{- if $managed }}
    managedResources:
      {{- toYaml $managed | nindent 6 }}
    {{- else }}
    # managedResources:   # only pods requesting one of these reach the extender
    #   - name: kbl.io/data
    #     ignoredByScheduler: true
    {{- end }}
{{- end -}}
