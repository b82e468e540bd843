{{/* Names, labels and the RBAC rules shared by the templates. */}}

{{- define "brix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or <release> when it already contains the chart name; 63 chars at most. */}}
{{- define "brix.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "brix.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object; call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "brix.labels" -}}
helm.sh/chart: {{ include "brix.chart" .ctx }}
{{ include "brix.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: brix
{{- end }}

{{- define "brix.selectorLabels" -}}
app.kubernetes.io/name: {{ include "brix.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "brix.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "brix.gatewayServiceAccount" -}}
{{- default (printf "%s-gateway" (include "brix.fullname" .)) .Values.serviceAccount.gatewayName }}
{{- end }}

{{- define "brix.controllersServiceAccount" -}}
{{- default (printf "%s-controllers" (include "brix.fullname" .)) .Values.serviceAccount.controllersName }}
{{- end }}

{{- define "brix.redisUrl" -}}
{{- printf "redis://%s-redis:%d/0" (include "brix.fullname" .) (int .Values.redis.port) }}
{{- end }}

{{/*
The rules a component needs, from rbac/<component>.json (the output of
`brix kubernetes rbac --component <component>`): one rule per API group and resource.
Call with (dict "ctx" $ "component" "controllers" "leases" false): leases=false leaves out
coordination.k8s.io leases (the Lease Role in the release namespace grants those),
leases=true keeps only them.
*/}}
{{- define "brix.rules" -}}
{{- $table := .ctx.Files.Get (printf "rbac/%s.json" .component) | fromJson }}
{{- if not $table }}
{{- fail (printf "rbac/%s.json is missing or empty" .component) }}
{{- end }}
{{- range $group, $resources := $table }}
{{- range $resource, $verbs := $resources }}
{{- $isLease := and (eq $group "coordination.k8s.io") (eq $resource "leases") }}
{{- if eq $isLease $.leases }}
- apiGroups: [{{ $group | quote }}]
  resources: [{{ $resource | quote }}]
  verbs: {{ toJson $verbs }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Secret-held API keys as env vars and the matching --api-key=$(VAR) arguments. */}}
{{- define "brix.apiKeyEnv" -}}
{{- if .Values.gateway.apiKeys.existingSecret }}
{{- range $i, $key := .Values.gateway.apiKeys.secretKeys }}
- name: BRIX_API_KEY_{{ $i }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.gateway.apiKeys.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}

{{- define "brix.apiKeyArgs" -}}
{{- if .Values.gateway.apiKeys.existingSecret }}
{{- range $i, $key := .Values.gateway.apiKeys.secretKeys }}
- --api-key=$(BRIX_API_KEY_{{ $i }})
{{- end }}
{{- end }}
{{- end }}
