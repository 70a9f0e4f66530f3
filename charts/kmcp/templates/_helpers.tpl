{{/* Chart name, or nameOverride: the app.kubernetes.io/name label. */}}
{{- define "kmcp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: fullnameOverride, else the release name when it already holds the chart name
(release "kmcp" gives the guide's names: kmcp-controller-manager, kmcp-manager-role, ...), else <release>-<name>. */}}
{{- define "kmcp.fullname" -}}
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

{{- define "kmcp.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{- define "kmcp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The guide's selector: the metrics Service and `kubectl logs -l app.kubernetes.io/name=kmcp` use it. */}}
{{- define "kmcp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kmcp.name" . }}
{{- end -}}

{{- define "kmcp.labels" -}}
helm.sh/chart: {{ include "kmcp.chart" . }}
{{ include "kmcp.selectorLabels" . }}
control-plane: controller-manager
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kmcp
{{- end -}}

{{- define "kmcp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-controller-manager" (include "kmcp.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The controller image; the same image runs the stdio adapter sidecar of every MCPServer pod. */}}
{{- define "kmcp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{/* The port of a bind address such as ":8081" or "0.0.0.0:8081". */}}
{{- define "kmcp.port" -}}
{{- splitList ":" (toString .) | last | int -}}
{{- end -}}

{{- define "kmcp.metricsScheme" -}}
{{- if .Values.controller.metrics.secureServing -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* A Service name is a DNS label: at most 63 characters, even with a long fullname. */}}
{{- define "kmcp.metricsServiceName" -}}
{{- printf "%s-controller-manager-metrics-service" (include "kmcp.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The ClusterRole the controller binds for `auth: kubernetes`: release-scoped like every cluster-scoped name here,
so two releases never share (or delete) one; release "kmcp" keeps kmcp install's kmcp-adapter-auth. The controller
learns it from KMCP_ADAPTER_AUTH_CLUSTER_ROLE. */}}
{{- define "kmcp.adapterAuthRole" -}}
{{- printf "%s-adapter-auth" (include "kmcp.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
