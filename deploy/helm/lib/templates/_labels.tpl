{{/* Standard labels (Kubernetes recommended labels, Helm/Bitnami style). */}}

{{- define "glia.selectorLabels" -}}
app.kubernetes.io/name: {{ include "glia.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "glia.labels" -}}
{{- $spec := fromYaml (include "glia.spec" .) -}}
helm.sh/chart: {{ include "glia.chart" . }}
{{ include "glia.selectorLabels" . }}
app.kubernetes.io/version: {{ include "glia.version" . | quote }}
app.kubernetes.io/component: {{ $spec.component }}
app.kubernetes.io/part-of: glia
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.annotations from commonAnnotations (and extra annotations given as a dict). */}}
{{- define "glia.annotations" -}}
{{- $all := merge (dict) (.extra | default dict) (.ctx.Values.commonAnnotations | default dict) -}}
{{- with $all }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The metadata block every namespaced resource shares. */}}
{{- define "glia.metadata" -}}
{{- $ctx := .ctx -}}
name: {{ .name | default (include "glia.fullname" $ctx) }}
namespace: {{ $ctx.Release.Namespace }}
labels:
  {{- include "glia.labels" $ctx | nindent 2 }}
  {{- with .labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- include "glia.annotations" (dict "ctx" $ctx "extra" .annotations) }}
{{- end -}}
