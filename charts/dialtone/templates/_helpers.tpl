{{/* Resource name prefix: <release>-dialtone, or fullnameOverride. */}}
{{- define "dialtone.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dialtone.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object; pass (dict "ctx" $ "component" "operator"). */}}
{{- define "dialtone.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: dialtone
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{ include "dialtone.selectorLabels" . }}
{{- end -}}

{{/* Immutable Deployment selectors. */}}
{{- define "dialtone.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dialtone.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dialtone.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "dialtone.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "dialtone.fullname" .)) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dialtone.readiness.serviceAccountName" -}}
{{- if .Values.readiness.serviceAccount.create -}}
{{- default (printf "%s-readiness" (include "dialtone.fullname" .)) .Values.readiness.serviceAccount.name -}}
{{- else -}}
{{- required "readiness.serviceAccount.name is required when readiness.serviceAccount.create is false" .Values.readiness.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the readiness service reads: its own list, else watchNamespace, else all (empty). */}}
{{- define "dialtone.readiness.namespaces" -}}
{{- if .Values.readiness.namespaces -}}
{{- join "," .Values.readiness.namespaces -}}
{{- else -}}
{{- .Values.watchNamespace -}}
{{- end -}}
{{- end -}}

{{/* PodDisruptionBudget apiVersion: policy/v1 where served (1.21+), else v1beta1 (1.20).
`helm template` lists policy/v1 whatever --kube-version says, hence both checks. */}}
{{- define "dialtone.pdbApiVersion" -}}
{{- if and (.Capabilities.APIVersions.Has "policy/v1") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version) -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/* Restricted Pod Security: pod level. */}}
{{- define "dialtone.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Restricted Pod Security: container level. */}}
{{- define "dialtone.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Scheduling fields shared by both Deployments; pass the component's values. */}}
{{- define "dialtone.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}
