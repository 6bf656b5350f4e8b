{{/*
Names and the per-chart spec.

Every chart that uses this library defines "glia.chart.spec": a YAML mapping with
  component:   app.kubernetes.io/component (api, worker, migrations)
  serviceName: default OTEL_SERVICE_NAME (e.g. glia-chat-api)
  hook:        true when the chart's resources run as Helm hooks (the migrations chart)
  secretEnv:   list of {name, optional} environment variables read from the Secret
All templates here take the chart's root context (.) and read the spec through "glia.spec".
*/}}

{{- define "glia.spec" -}}
{{- include "glia.chart.spec" . -}}
{{- end -}}

{{/* Chart name, or nameOverride. */}}
{{- define "glia.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name: fullnameOverride, else the release name when it already contains the
chart name (release "glia-chat-api" -> "glia-chat-api"), else "<release>-<chart>".
*/}}
{{- define "glia.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* name-version, for the helm.sh/chart label. */}}
{{- define "glia.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "glia.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "glia.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret the pods read: existingSecret, else the one this chart creates. */}}
{{- define "glia.secretName" -}}
{{- if .Values.secret.existingSecret -}}
{{- .Values.secret.existingSecret -}}
{{- else -}}
{{- include "glia.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* registry/repository:tag, or @digest when a digest is given. Tag defaults to appVersion. */}}
{{- define "glia.image" -}}
{{- $img := .Values.image -}}
{{- $repo := $img.repository -}}
{{- if $img.registry -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" $img.registry) $img.repository -}}
{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $img.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* The version shown in labels and traces: the image tag, else appVersion. */}}
{{- define "glia.version" -}}
{{- default .Chart.AppVersion .Values.image.tag | toString | replace "+" "_" | replace "@" "_" | replace ":" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}
