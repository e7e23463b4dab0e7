{{/* Chart name, truncated to 63 characters (label value limit). */}}
{{- define "promethios-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name. A release named like the chart (the documented `helm install promethios-operator`)
gives "promethios-operator", which makes the default ingest URL
https://promethios-operator.promethios-system.svc:8443 (the operator's built-in default).
*/}}
{{- define "promethios-operator.fullname" -}}
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

{{- define "promethios-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pod; never change them (Deployment selectors are immutable). */}}
{{- define "promethios-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "promethios-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "promethios-operator.labels" -}}
helm.sh/chart: {{ include "promethios-operator.chart" . }}
{{ include "promethios-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: promethios
{{- end }}

{{- define "promethios-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "promethios-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image: repository@digest when a digest is set, else repository:tag. */}}
{{- define "promethios-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The sidecar image: the operator image unless overridden. */}}
{{- define "promethios-operator.sidecarImage" -}}
{{- if or .Values.sidecar.image.repository .Values.sidecar.image.tag }}
{{- printf "%s:%s" (default .Values.image.repository .Values.sidecar.image.repository) (default (default .Chart.AppVersion .Values.image.tag) .Values.sidecar.image.tag) }}
{{- else }}
{{- include "promethios-operator.image" . }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the ingest API runs as its own Deployment. */}}
{{- define "promethios-operator.ingestStandalone" -}}
{{- if eq .Values.ingest.mode "standalone" }}true{{ end }}
{{- end }}

{{/* Name of the standalone ingest Deployment, PodDisruptionBudget and (Cluster)Roles. */}}
{{- define "promethios-operator.ingestName" -}}
{{- printf "%s-ingest" (include "promethios-operator.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/*
Labels that select the standalone ingest pods. The name label differs from the operator's
so that neither the operator Deployment's (immutable) selector nor the ingest Deployment's
overlaps the other's pods.
*/}}
{{/* --ingest-pods: the pods serving the ingest API, as NAMESPACE/key=value,key=value (a
quarantine NetworkPolicy still lets sidecars reach them). */}}
{{- define "promethios-operator.ingestPods" -}}
{{- $labels := include "promethios-operator.selectorLabels" . | fromYaml -}}
{{- if include "promethios-operator.ingestStandalone" . -}}
{{- $labels = include "promethios-operator.ingestSelectorLabels" . | fromYaml -}}
{{- end -}}
{{- $pairs := list -}}
{{- range $key, $value := $labels -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- printf "%s/%s" .Release.Namespace (join "," $pairs) -}}
{{- end }}

{{- define "promethios-operator.ingestSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-ingest" (include "promethios-operator.name" . | trunc 56 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "promethios-operator.ingestLabels" -}}
helm.sh/chart: {{ include "promethios-operator.chart" . }}
{{ include "promethios-operator.ingestSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: promethios
app.kubernetes.io/component: ingest
{{- end }}

{{- define "promethios-operator.ingestServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "promethios-operator.ingestName" .) .Values.ingest.serviceAccount.name }}
{{- else }}
{{- required "ingest.serviceAccount.name is required when serviceAccount.create is false and ingest.mode is standalone" .Values.ingest.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where sidecars send heartbeats, metrics and violations: https unless tls.mode=off. */}}
{{- define "promethios-operator.ingestUrl" -}}
{{- $scheme := ternary "http" "https" (eq .Values.tls.mode "off") }}
{{- default (printf "%s://%s.%s.svc:%d" $scheme (include "promethios-operator.fullname" .) .Release.Namespace (int .Values.service.port)) .Values.ingest.url }}
{{- end }}

{{/* The Secret holding the ingest API's certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "promethios-operator.tlsSecretName" -}}
{{- default (printf "%s-ingest-tls" (include "promethios-operator.fullname" . | trunc 52 | trimSuffix "-")) .Values.tls.secretName }}
{{- end }}

{{/* True (non-empty) when the ingest API speaks TLS. */}}
{{- define "promethios-operator.tlsOn" -}}
{{- if ne .Values.tls.mode "off" }}true{{ end }}
{{- end }}

{{/* The DNS names of the ingest Service (the serving certificate's names). */}}
{{- define "promethios-operator.serviceDnsNames" -}}
{{- $host := printf "%s.%s.svc" (include "promethios-operator.fullname" .) .Release.Namespace -}}
- {{ $host }}
- {{ $host }}.cluster.local
{{- range .Values.tls.extraNames }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* Cross-field checks the JSON schema cannot express. */}}
{{- define "promethios-operator.validate" -}}
{{- $election := .Values.leaderElection }}
{{- if and (gt (int .Values.replicaCount) 1) (not $election.enabled) }}
{{- fail (printf "replicaCount: %d replicas need leaderElection.enabled=true (without it every replica would reconcile every GovernedAgent)" (int .Values.replicaCount)) }}
{{- end }}
{{- if $election.enabled }}
{{- if ge (float64 $election.renewDeadline) (float64 $election.leaseDuration) }}
{{- fail (printf "leaderElection.renewDeadline (%v) must be less than leaderElection.leaseDuration (%v)" $election.renewDeadline $election.leaseDuration) }}
{{- end }}
{{- if le (float64 $election.renewDeadline) (mulf 1.2 $election.retryPeriod) }}
{{- fail (printf "leaderElection.renewDeadline (%v) must exceed 1.2 x leaderElection.retryPeriod (%v)" $election.renewDeadline $election.retryPeriod) }}
{{- end }}
{{- end }}
{{- if and (not (include "promethios-operator.ingestStandalone" .)) (eq (int .Values.ingest.port) (int .Values.livenessPort)) }}
{{- fail (printf "ingest.port and livenessPort must differ (both are %d)" (int .Values.ingest.port)) }}
{{- end }}
{{- if and .Values.ingest.readTokenSecret.name (not (include "promethios-operator.ingestStandalone" .)) }}
{{- fail "ingest.readTokenSecret needs ingest.mode=standalone (the operator's in-process ingest API takes no read token)" }}
{{- end }}
{{- if and (has "Deny" .Values.admissionPolicy.validationActions) (has "Warn" .Values.admissionPolicy.validationActions) }}
{{- fail "admissionPolicy.validationActions: Deny and Warn are mutually exclusive (Kubernetes refuses the binding)" }}
{{- end }}
{{- if eq (int .Values.service.port) (int .Values.service.metricsPort) }}
{{- fail (printf "service.port and service.metricsPort must differ (both are %d)" (int .Values.service.port)) }}
{{- end }}
{{- if eq (int .Values.ingest.port) (int .Values.ingest.metricsPort) }}
{{- fail (printf "ingest.port and ingest.metricsPort must differ (both are %d)" (int .Values.ingest.port)) }}
{{- end }}
{{- if and (not (include "promethios-operator.ingestStandalone" .)) (eq (int .Values.ingest.metricsPort) (int .Values.livenessPort)) }}
{{- fail (printf "ingest.metricsPort and livenessPort must differ (both are %d)" (int .Values.livenessPort)) }}
{{- end }}
{{- with .Values.ingest.url }}
{{- if and (eq $.Values.tls.mode "off") (hasPrefix "https://" .) }}
{{- fail "ingest.url is https:// but tls.mode is off (the ingest API would speak plain HTTP)" }}
{{- end }}
{{- if and (ne $.Values.tls.mode "off") (hasPrefix "http://" .) }}
{{- fail (printf "ingest.url must be https:// when tls.mode is %s (got %s)" $.Values.tls.mode .) }}
{{- end }}
{{- end }}
{{- end }}
