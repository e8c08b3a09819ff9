{{/* Labels every object carries. */}}
{{- define "secops.labels" -}}
app.kubernetes.io/name: secops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The restricted pod security profile. */}}
{{- define "secops.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "secops.containerSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Volumes: outputs, the audience-bound token for Vault login, Vault's CA. */}}
{{- define "secops.volumes" -}}
- name: out
  emptyDir:
    sizeLimit: 16Mi
- name: vault-token
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ .Values.vault.tokenAudience }}
          expirationSeconds: 600
          path: token
{{- if .Values.vault.caConfigMap }}
- name: vault-ca
  configMap:
    name: {{ .Values.vault.caConfigMap }}
{{- end }}
{{- end }}

{{/*
A secops container. Call with (dict "root" $ "role" "handover|rotate|push" "args" (list ...)).
Values move only inside the step, from Kubernetes to Vault: no argument or output carries one.
*/}}
{{- define "secops.container" -}}
{{- $v := .root.Values -}}
image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
imagePullPolicy: {{ $v.image.pullPolicy }}
command: [/secops]
args:
{{- range .args }}
  - {{ . | quote }}
{{- end }}
env:
  - name: VAULT_ADDR
    value: {{ $v.vault.address | quote }}
{{- if $v.vault.namespace }}
  - name: VAULT_NAMESPACE
    value: {{ $v.vault.namespace | quote }}
{{- end }}
  - name: SECOPS_VAULT_AUTH
    value: kubernetes
  - name: SECOPS_VAULT_ROLE
    value: {{ index $v.vault.roles .role | quote }}
  - name: SECOPS_VAULT_AUTH_MOUNT
    value: {{ $v.vault.authMount | quote }}
  - name: SECOPS_VAULT_JWT_FILE
    value: /var/run/secrets/vault/token
{{- if $v.vault.caConfigMap }}
  - name: VAULT_CACERT
    value: /etc/secops/vault-ca/ca.crt
{{- end }}
  - name: SECOPS_KV_MOUNT
    value: {{ $v.vault.kvMount | quote }}
  - name: SECOPS_ALLOWED_PATHS
    value: {{ join "," $v.allowedPaths | quote }}
{{- if $v.clusterName }}
  - name: SECOPS_CLUSTER
    value: {{ $v.clusterName | quote }}
{{- end }}
  - name: SECOPS_OUTPUT_DIR
    value: /out
  - name: SECOPS_LOG_FORMAT
    value: {{ $v.logFormat | quote }}
  - name: POD_NAME
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
  - name: SERVICE_ACCOUNT
    valueFrom:
      fieldRef:
        fieldPath: spec.serviceAccountName
{{- if .workflow }}
  - name: ARGO_WORKFLOW_NAME
    value: "{{ "{{" }}workflow.name{{ "}}" }}"
  - name: ARGO_WORKFLOW_UID
    value: "{{ "{{" }}workflow.uid{{ "}}" }}"
{{- end }}
resources:
{{ toYaml $v.resources | indent 2 }}
securityContext:
{{ include "secops.containerSecurityContext" .root | indent 2 }}
volumeMounts:
  - name: out
    mountPath: /out
  - name: vault-token
    mountPath: /var/run/secrets/vault
    readOnly: true
{{- if $v.vault.caConfigMap }}
  - name: vault-ca
    mountPath: /etc/secops/vault-ca
    readOnly: true
{{- end }}
{{- end }}

{{/* Retry temporary failures (exit 75) only, with backoff. */}}
{{- define "secops.retryStrategy" -}}
limit: {{ .Values.retry.limit }}
retryPolicy: Always
expression: "asInt(lastRetry.exitCode) == 75"
backoff:
  duration: {{ .Values.retry.backoff | quote }}
  factor: 2
  maxDuration: {{ .Values.retry.maxBackoff | quote }}
{{- end }}

{{/* Settings every WorkflowTemplate shares. Its service account mounts no token by itself:
every step pod asks for one here, since secops and Argo's executor both call the API. */}}
{{- define "secops.workflowSpec" -}}
serviceAccountName: {{ index .root.Values.serviceAccounts .role }}
automountServiceAccountToken: true
activeDeadlineSeconds: {{ .root.Values.activeDeadlineSeconds }}
securityContext:
{{ include "secops.podSecurityContext" .root | indent 2 }}
volumes:
{{ include "secops.volumes" .root | indent 2 }}
{{- end }}

{{/* The namespaces with Roles: the managed list, plus consumer namespaces of rotations. */}}
{{- define "secops.consumerRules" -}}
{{- $rules := dict -}}
{{- range .Values.rotations -}}
{{- range .refresh -}}
{{- $parts := splitList "/" . -}}
{{- $_ := set $rules (printf "%s|externalsecrets|external-secrets.io|%s" (index $parts 1) (index $parts 2)) true -}}
{{- end -}}
{{- range .restart -}}
{{- $parts := splitList "/" . -}}
{{- $_ := set $rules (printf "%s|%ss|apps|%s" (index $parts 1) (index $parts 0) (index $parts 2)) true -}}
{{- end -}}
{{- end -}}
{{- keys $rules | sortAlpha | join "\n" -}}
{{- end }}

{{/* The WorkflowTemplate of one configured rotation: a KV write, or an engine's static role. */}}
{{- define "secops.rotationTemplate" -}}
{{- if .staticRole }}secops-rotate-static-role{{ else }}secops-rotate{{ end }}
{{- end }}

{{/* The parameters of one configured rotation's template (rotation-id left to the caller). */}}
{{- define "secops.rotationParameters" -}}
{{- if .staticRole }}
- name: static-role
  value: {{ .staticRole | quote }}
{{- else }}
- name: path
  value: {{ .path | quote }}
- name: keys
  value: {{ join "," .keys | quote }}
- name: generator
  value: {{ .generator | default "password" | quote }}
- name: length
  value: {{ .length | default 32 | toString | quote }}
- name: policy
  value: {{ .policy | default "" | quote }}
- name: keep-versions
  value: {{ .keepVersions | default 0 | toString | quote }}
{{- end }}
- name: refresh
  value: {{ join "," (.refresh | default list) | quote }}
- name: restart
  value: {{ join "," (.restart | default list) | quote }}
- name: if-older-than
  value: {{ .ifOlderThan | default "0" | quote }}
- name: sync-timeout
  value: {{ .syncTimeout | default "5m" | quote }}
{{- end }}

{{/* The rotations a calendar Sensor schedules: only where no CronWorkflow does (one
scheduler per rotation, or each tick would rotate twice under two ids). */}}
{{- define "secops.calendarRotations" -}}
{{- if and .Values.events.enabled (not .Values.cronWorkflows.enabled) -}}
{{- toJson (.Values.rotations | default list) -}}
{{- else -}}
[]
{{- end -}}
{{- end }}

{{- /* The name a step's Vault policy is applied under (vault-setup prefixes `secops-` to the
ConfigMap key's stem). Policies are global in Vault, so with a clusterName each cluster's
policies are its own: two clusters sharing a Vault never overwrite each other's. */ -}}
{{- define "secops.policyStem" -}}
{{- if .root.Values.clusterName }}{{ printf "%s-%s" .root.Values.clusterName .role }}{{ else }}{{ .role }}{{ end -}}
{{- end -}}
