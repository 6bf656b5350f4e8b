{{/* ClusterIP Service on the named port "http" (API and /metrics). */}}
{{- define "glia.service" -}}
apiVersion: v1
kind: Service
metadata:
  {{- include "glia.metadata" (dict "ctx" . "annotations" .Values.service.annotations) | nindent 2 }}
spec:
  type: {{ .Values.service.type }}
  selector:
    {{- include "glia.selectorLabels" . | nindent 4 }}
  ports:
    - name: http
      port: {{ .Values.service.port }}
      targetPort: http
      protocol: TCP
      appProtocol: http
{{- end -}}

{{/* ServiceAccount, unless serviceAccount.create is false. */}}
{{- define "glia.serviceAccount" -}}
{{- if .Values.serviceAccount.create -}}
{{- $ann := merge (fromYaml (include "glia.hookAnnotations" (dict "ctx" . "weight" "-10")) | default dict) (.Values.serviceAccount.annotations | default dict) -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  {{- include "glia.metadata" (dict "ctx" . "name" (include "glia.serviceAccountName" .) "annotations" $ann) | nindent 2 }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
{{- end -}}
{{- end -}}

{{/* PodDisruptionBudget: keeps replicas up through node drains. */}}
{{- define "glia.pdb" -}}
{{- if .Values.pdb.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  {{- include "glia.metadata" (dict "ctx" .) | nindent 2 }}
spec:
  {{- if ne (toString .Values.pdb.minAvailable) "" }}
  minAvailable: {{ .Values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .Values.pdb.maxUnavailable }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "glia.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}

{{/* HorizontalPodAutoscaler on CPU (and optionally memory) utilization. */}}
{{- define "glia.hpa" -}}
{{- $a := .Values.autoscaling -}}
{{- if $a.enabled -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  {{- include "glia.metadata" (dict "ctx" .) | nindent 2 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "glia.fullname" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- with $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/*
NetworkPolicy for the pods. Ingress: the "http" port (API and /metrics), from anywhere
when allowExternal, else from the ingressFrom peers only (none: no ingress). Egress: everything when
allowExternalEgress, else DNS plus the given rules (database, broker, OTLP, LLM...).
*/}}
{{- define "glia.networkPolicy" -}}
{{- $np := .Values.networkPolicy -}}
{{- if $np.enabled -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "glia.metadata" (dict "ctx" .) | nindent 2 }}
spec:
  podSelector:
    matchLabels:
      {{- include "glia.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  {{- if or $np.allowExternal $np.ingressFrom }}
  ingress:
    - ports:
        - port: http
          protocol: TCP
      {{- if not $np.allowExternal }}
      from:
        {{- toYaml $np.ingressFrom | nindent 8 }}
      {{- end }}
  {{- else }}
  # Neither allowExternal nor ingressFrom: no ingress at all.
  ingress: []
  {{- end }}
  egress:
    {{- if $np.allowExternalEgress }}
    - {}
    {{- else }}
    - ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    {{- with $np.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- end }}
{{- end -}}
{{- end -}}
