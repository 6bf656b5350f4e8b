{{/*
Environment wiring. Non-secret settings (.Values.config, .Values.extraConfig, .Values.otel)
become a ConfigMap read with envFrom; secret settings are single env entries with
valueFrom.secretKeyRef, never plain values. Keys of the Secret are the variable names.
*/}}

{{/* Hook annotations for charts whose resources must exist before a pre-install hook Job. */}}
{{- define "glia.hookAnnotations" -}}
{{- $spec := fromYaml (include "glia.spec" .ctx) -}}
{{- if $spec.hook }}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | default "-10" | quote }}
helm.sh/hook-delete-policy: before-hook-creation
{{- end }}
{{- end -}}

{{/* The non-secret environment as a flat map of strings (empty values are left out). */}}
{{- define "glia.configData" -}}
{{- $spec := fromYaml (include "glia.spec" .) -}}
{{- $data := dict -}}
{{- if not $spec.hook -}}
{{- $_ := set $data "GLIA_HTTP_HOST" "0.0.0.0" -}}
{{- end -}}
{{- range $k, $v := .Values.config -}}
{{- if not (or (kindIs "invalid" $v) (eq (toString $v) "")) -}}
{{- $_ := set $data $k (toString $v) -}}
{{- end -}}
{{- end -}}
{{- $otel := .Values.otel -}}
{{- $_ := set $data "OTEL_SERVICE_NAME" (default $spec.serviceName $otel.serviceName) -}}
{{- if $otel.endpoint -}}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_ENDPOINT" $otel.endpoint -}}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_PROTOCOL" $otel.protocol -}}
{{- $_ := set $data "OTEL_TRACES_SAMPLER" $otel.sampler -}}
{{- if contains "traceidratio" $otel.sampler -}}
{{- $_ := set $data "OTEL_TRACES_SAMPLER_ARG" (toString $otel.samplerArg) -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := .Values.extraConfig -}}
{{- $_ := set $data $k (toString $v) -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{- define "glia.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- include "glia.metadata" (dict "ctx" .) | nindent 2 }}
data:
  {{- range $k, $v := fromYaml (include "glia.configData" .) }}
  {{ $k }}: {{ $v | quote }}
  {{- end }}
{{- end -}}

{{/* The same settings as inline env entries (for hook Jobs, which run before any ConfigMap exists). */}}
{{- define "glia.configEnv" -}}
{{- range $k, $v := fromYaml (include "glia.configData" .) }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/*
Secret created by the chart from .Values.secret.values: for development only.
Rendered only when secret.existingSecret is empty; required keys must then be set.
*/}}
{{- define "glia.secret" -}}
{{- if not .Values.secret.existingSecret -}}
{{- $spec := fromYaml (include "glia.spec" .) -}}
{{- $values := .Values.secret.values -}}
{{- range $spec.secretEnv }}
{{- if and (not .optional) (not (get $values .name)) }}
{{- fail (printf "secret.values.%s is required when secret.existingSecret is empty (prefer secret.existingSecret in production)" .name) }}
{{- end }}
{{- end }}
apiVersion: v1
kind: Secret
metadata:
  {{- $ann := fromYaml (include "glia.hookAnnotations" (dict "ctx" . "weight" "-10")) | default dict }}
  {{- $_ := set $ann "glia/development-only" "true" }}
  {{- include "glia.metadata" (dict "ctx" . "annotations" $ann) | nindent 2 }}
type: Opaque
data:
  {{- range $spec.secretEnv }}
  {{- $v := get $values .name }}
  {{- if $v }}
  {{ .name }}: {{ $v | b64enc | quote }}
  {{- end }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* env entries for every secret variable of this chart, from the Secret. */}}
{{- define "glia.secretEnv" -}}
{{- $spec := fromYaml (include "glia.spec" .) -}}
{{- $secret := include "glia.secretName" . -}}
{{- range $spec.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .name }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end -}}

{{/* Pod identity for logs and traces (OTEL_RESOURCE_ATTRIBUTES uses $(VAR) expansion). */}}
{{- define "glia.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- $attrs := list "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" "k8s.node.name=$(NODE_NAME)" (printf "service.version=%s" (include "glia.version" .)) (printf "service.namespace=%s" "glia") }}
{{- with .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs . }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end -}}

{{/* checksum/* pod annotations: a change of settings rolls the pods. */}}
{{- define "glia.checksums" -}}
checksum/config: {{ include "glia.configData" . | sha256sum }}
{{- if not .Values.secret.existingSecret }}
checksum/secret: {{ toYaml .Values.secret.values | sha256sum }}
{{- end }}
{{- end -}}
