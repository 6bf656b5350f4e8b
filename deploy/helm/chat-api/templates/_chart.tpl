{{/* What this chart tells the glia-lib templates (see lib/templates/_names.tpl). */}}
{{- define "glia.chart.spec" -}}
component: api
serviceName: glia-chat-api
hook: false
secretEnv:
  - name: GLIA_DATABASE_URL
  - name: GLIA_DATABASE_WORKER_URL
    optional: true
  - name: GLIA_AMQP_URL
  - name: GLIA_JWT_SECRET
    optional: true
  - name: GLIA_LLM_API_KEY
    optional: true
{{- end -}}
