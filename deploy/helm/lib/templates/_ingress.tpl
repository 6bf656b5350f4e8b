{{/*
Ingress for the path prefixes of one service on the shared public host (chat-api:
/v1/conversations and the web client's /app, card-query: /v1/cards): ingress.path, then
ingress.extraPaths when the chart has them. When .Values.ingress.sse is present, adds the streaming-friendly
annotations of the chosen controller: SSE replies are long-lived and must not be buffered.
Annotations given in ingress.annotations win over the presets.
*/}}
{{- define "glia.sseAnnotations" -}}
{{- $sse := .Values.ingress.sse -}}
{{- $t := int $sse.timeoutSeconds -}}
{{- if eq $sse.controller "nginx" }}
nginx.ingress.kubernetes.io/proxy-buffering: "off"
nginx.ingress.kubernetes.io/proxy-read-timeout: {{ $t | toString | quote }}
nginx.ingress.kubernetes.io/proxy-send-timeout: {{ $t | toString | quote }}
{{- else if eq $sse.controller "haproxy" }}
haproxy.org/timeout-server: {{ printf "%ds" $t | quote }}
haproxy.org/timeout-client: {{ printf "%ds" $t | quote }}
{{- else if eq $sse.controller "haproxy-ingress" }}
haproxy-ingress.github.io/timeout-server: {{ printf "%ds" $t | quote }}
haproxy-ingress.github.io/timeout-client: {{ printf "%ds" $t | quote }}
{{- end }}
{{- /* traefik streams responses unbuffered and has no response timeout by default: nothing to add. */ -}}
{{- end -}}

{{- define "glia.ingress" -}}
{{- $ing := .Values.ingress -}}
{{- if $ing.enabled -}}
{{- $ann := dict -}}
{{- if hasKey $ing "sse" -}}
{{- $ann = fromYaml (include "glia.sseAnnotations" .) | default dict -}}
{{- end -}}
{{- $ann = merge (deepCopy ($ing.annotations | default dict)) $ann -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  {{- include "glia.metadata" (dict "ctx" . "annotations" $ann) | nindent 2 }}
spec:
  {{- with $ing.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- if $ing.tls.enabled }}
  tls:
    - hosts:
        - {{ $ing.host | quote }}
      secretName: {{ required "ingress.tls.secretName is required when ingress.tls.enabled" $ing.tls.secretName }}
  {{- end }}
  rules:
    - host: {{ required "ingress.host is required when ingress.enabled" $ing.host | quote }}
      http:
        paths:
          {{- range prepend ($ing.extraPaths | default list) $ing.path }}
          - path: {{ . }}
            pathType: {{ $ing.pathType }}
            backend:
              service:
                name: {{ include "glia.fullname" $ }}
                port:
                  name: http
          {{- end }}
{{- end -}}
{{- end -}}

{{/* Prometheus Operator ServiceMonitor (a CRD: off by default; pod annotations cover plain Prometheus). */}}
{{- define "glia.serviceMonitor" -}}
{{- $sm := .Values.metrics.serviceMonitor -}}
{{- if $sm.enabled -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  {{- include "glia.metadata" (dict "ctx" . "labels" $sm.labels) | nindent 2 }}
spec:
  selector:
    matchLabels:
      {{- include "glia.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
{{- end -}}
{{- end -}}
