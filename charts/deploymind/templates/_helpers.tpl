{{/*
Names and labels shared by every template (prometheusrule.yaml keeps its own, so it also renders on its own).
*/}}

{{- define "deploymind.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name. `helm install deploymind … -n deploymind-system` gives the Service `deploymind` in
`deploymind-system`: what `deploymind history` reaches by default.
*/}}
{{- define "deploymind.fullname" -}}
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

{{- define "deploymind.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deploymind.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "deploymind.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "deploymind.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: deploymind
{{- end }}

{{- define "deploymind.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "deploymind.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: name the existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "deploymind.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* SQLite in the state directory unless a PostgreSQL URL Secret is named. */}}
{{- define "deploymind.sqlite" -}}
{{- if not .Values.history.databaseUrlSecret.name }}true{{- end }}
{{- end }}

{{/* The Role rules the operator needs in each namespace it watches (cluster-wide: in a ClusterRole). */}}
{{- define "deploymind.watchRules" -}}
# Kopf lists and watches Deployments, patches their finalizer and its progress annotations; the actor GETs one
# object when its cached copy may be stale.
- apiGroups: ["deploymind.io"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
# The status writer merge-patches status (with a resourceVersion precondition).
- apiGroups: ["deploymind.io"]
  resources: ["deployments/status"]
  verbs: ["patch"]
# Each Secret a Deployment names is read, then watched by name (fieldSelector=metadata.name): never listed.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "watch"]
# Events are posted when a condition changes (core/v1; Kopf's own event posting is off).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
