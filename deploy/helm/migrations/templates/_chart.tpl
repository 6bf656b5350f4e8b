{{/* What this chart tells the glia-lib templates (see lib/templates/_names.tpl). */}}
{{- define "glia.chart.spec" -}}
component: migrations
serviceName: glia-migrate
# Everything here runs as a pre-install/pre-upgrade hook, before any normal resource exists.
hook: true
secretEnv:
  - name: GLIA_DATABASE_ADMIN_URL
  - name: GLIA_DATABASE_URL
  - name: GLIA_DATABASE_WORKER_URL
    optional: true
  - name: GLIA_DATABASE_OPERATOR_URL
    optional: true
{{- end -}}
