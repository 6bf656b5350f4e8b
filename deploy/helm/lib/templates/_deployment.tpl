{{/*
Deployment of one Glia service: a single container running the image's glia-* entry
point, hardened (non-root, read-only root filesystem with an emptyDir at /tmp, no
privilege escalation, all capabilities dropped, RuntimeDefault seccomp), probed on
/healthz (startup, liveness) and /readyz (readiness), drained by a preStop sleep and a
termination grace period long enough for the service's own shutdown.
*/}}
{{- define "glia.deployment" -}}
{{- $spec := fromYaml (include "glia.spec" .) -}}
{{- $port := int .Values.config.GLIA_HTTP_PORT -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  {{- include "glia.metadata" (dict "ctx" .) | nindent 2 }}
spec:
  {{- if not (include "glia.externallyScaled" .) }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ .Values.revisionHistoryLimit }}
  strategy:
    type: {{ .Values.updateStrategy.type }}
    {{- if eq .Values.updateStrategy.type "RollingUpdate" }}
    rollingUpdate:
      maxSurge: {{ .Values.updateStrategy.rollingUpdate.maxSurge }}
      maxUnavailable: {{ .Values.updateStrategy.rollingUpdate.maxUnavailable }}
    {{- end }}
  selector:
    matchLabels:
      {{- include "glia.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "glia.labels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- include "glia.checksums" . | nindent 8 }}
        {{- if .Values.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $port | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "glia.serviceAccountName" . }}
      automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
      # No *_SERVICE_HOST/*_PORT variables: they could collide with GLIA_* settings.
      enableServiceLinks: false
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      {{- with include "glia.topologySpreadConstraints" . | trim }}
      {{- . | nindent 6 }}
      {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .Chart.Name }}
          image: {{ include "glia.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "glia.fullname" . }}
          env:
            {{- include "glia.podEnv" . | trim | nindent 12 }}
            {{- with include "glia.secretEnv" . | trim }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with include "glia.probes" . | trim }}
          {{- . | nindent 10 }}
          {{- end }}
          {{- if gt (int .Values.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              # Let endpoints and the ingress stop sending new requests before SIGTERM.
              exec:
                command: ["sleep", {{ .Values.preStopSleepSeconds | toString | quote }}]
          {{- end }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          securityContext:
            {{- toYaml .Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with .Values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ .Values.tmpSizeLimit }}
        {{- with .Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
{{- end -}}

{{/* True (non-empty) when an HPA or a KEDA ScaledObject owns the replica count. */}}
{{- define "glia.externallyScaled" -}}
{{- if .Values.autoscaling.enabled -}}true{{- end -}}
{{- if and (hasKey .Values "keda") .Values.keda.enabled -}}true{{- end -}}
{{- end -}}

{{/* Startup and liveness on /healthz, readiness on /readyz (database and broker). */}}
{{- define "glia.probes" -}}
{{- range $kind, $path := dict "startup" "/healthz" "liveness" "/healthz" "readiness" "/readyz" }}
{{- $p := index $.Values.probes $kind }}
{{- if $p.enabled }}
{{ $kind }}Probe:
  httpGet:
    path: {{ $path }}
    port: http
  {{- with $p.initialDelaySeconds }}
  initialDelaySeconds: {{ . }}
  {{- end }}
  periodSeconds: {{ $p.periodSeconds }}
  timeoutSeconds: {{ $p.timeoutSeconds }}
  failureThreshold: {{ $p.failureThreshold }}
  {{- if eq $kind "readiness" }}
  successThreshold: {{ $p.successThreshold | default 1 }}
  {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Spread replicas over zones and nodes (ScheduleAnyway: a preference that never blocks
scheduling), plus any raw constraints from extraTopologySpreadConstraints.
*/}}
{{- define "glia.topologySpreadConstraints" -}}
{{- $constraints := list -}}
{{- if .Values.topologySpread.enabled -}}
{{- range .Values.topologySpread.topologyKeys -}}
{{- $constraints = append $constraints (dict "maxSkew" $.Values.topologySpread.maxSkew "topologyKey" . "whenUnsatisfiable" $.Values.topologySpread.whenUnsatisfiable "labelSelector" (dict "matchLabels" (fromYaml (include "glia.selectorLabels" $))) "matchLabelKeys" (list "pod-template-hash")) -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraTopologySpreadConstraints -}}
{{- $constraints = append $constraints . -}}
{{- end -}}
{{- with $constraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
