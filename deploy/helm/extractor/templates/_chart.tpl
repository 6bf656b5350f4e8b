{{/* What this chart tells the glia-lib templates (see lib/templates/_names.tpl). */}}
{{- define "glia.chart.spec" -}}
component: worker
serviceName: glia-extractor
hook: false
secretEnv:
  - name: GLIA_DATABASE_URL
  - name: GLIA_DATABASE_WORKER_URL
    optional: true
  - name: GLIA_DATABASE_OPERATOR_URL
    optional: true
  - name: GLIA_AMQP_URL
  - name: GLIA_LLM_API_KEY
    optional: true
{{- end -}}
