{{/*
Names and labels shared by the templates. The label and selector keys that
Services select by are written out in each template (not hidden in a helper)
so that tests/chart/check_chart.py can compare them.
*/}}

{{/* Base of every object name: fullnameOverride, else the release name. */}}
{{- define "pglease.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* The chart name for app.kubernetes.io/name. */}}
{{- define "pglease.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* cluster_name: the Lease is <clusterName>-leader. */}}
{{- define "pglease.clusterName" -}}
{{- default (include "pglease.fullname" .) .Values.clusterName -}}
{{- end -}}

{{- define "pglease.statefulsetName" -}}
{{- default (printf "%s-postgres" (include "pglease.fullname" .)) .Values.postgres.statefulsetName -}}
{{- end -}}

{{- define "pglease.headlessName" -}}
{{- printf "%s-headless" (include "pglease.fullname" .) -}}
{{- end -}}

{{- define "pglease.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pglease.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pglease.secretName" -}}
{{- default (include "pglease.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Labels every object carries (not used in selectors). */}}
{{- define "pglease.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pglease
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "pglease.agentImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "pglease.postgresImage" -}}
{{- printf "%s:%s" .Values.postgresImage.repository .Values.postgresImage.tag -}}
{{- end -}}

{{/*
A password for the chart's Secret: the value given, else the one already in
the Secret (kept across upgrades), else a new random one.
Call with (dict "root" $ "secret" NAME "key" KEY "value" VALUE).
*/}}
{{- define "pglease.password" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if .value -}}
{{- .value | b64enc -}}
{{- else if and $existing (index ($existing.data | default dict) .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
The environment of the init, postgres and agent containers: the per-pod
configuration keys (PGLEASE_<KEY> wins over pglease.conf), PGDATA and the
demote timeout of the pre-stop scripts. No password is ever set here.
*/}}
{{- define "pglease.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: PGLEASE_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: PGLEASE_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: PGLEASE_CLUSTER_NAME
  value: {{ include "pglease.clusterName" . }}
- name: PGLEASE_CONNECT_ADDRESS
  value: $(POD_NAME).{{ include "pglease.headlessName" . }}.$(PGLEASE_NAMESPACE).svc.{{ .Values.clusterDomain }}
- name: PGDATA
  value: {{ .Values.config.data_dir }}
- name: DEMOTE_TIMEOUT
  value: {{ .Values.postgres.demoteTimeout | quote }}
{{- end -}}

{{/*
The volumes of the init, postgres and agent containers: PGDATA's PVC, the
agent programs and migrations copied by install-agent (the compiled-in
migrations directory is /usr/share/pglease/sql), the shared run and socket
directories, pglease.conf at the path agentctl reads by default, and the
password files.
*/}}
{{- define "pglease.podMounts" -}}
- name: data
  mountPath: {{ .Values.postgres.dataMountPath }}
- name: pglease-bin
  mountPath: /pglease/bin
  readOnly: true
- name: pglease-sql
  mountPath: /usr/share/pglease/sql
  readOnly: true
- name: run
  mountPath: /run/pglease
- name: sockets
  mountPath: /var/run/postgresql
- name: config
  mountPath: /etc/pglease
  readOnly: true
- name: secrets
  mountPath: /run/secrets/pglease
  readOnly: true
{{- end -}}

{{/* The environment of the pgpool and pgpool-follow containers (no passwords). */}}
{{- define "pglease.pgpoolEnv" -}}
- name: PGPOOL_CONF
  value: /etc/pgpool/pgpool.conf
- name: PGPOOL_HBA
  value: /etc/pgpool/pool_hba.conf
- name: PGPOOL_RUN_DIR
  value: /run/pgpool
- name: PGPOOL_SUPERUSER
  value: {{ .Values.config.superuser }}
- name: PGPOOL_SUPERUSER_PASSWORD_FILE
  value: /run/secrets/pglease/superuser
- name: PGPOOL_USERS_DIR
  value: /run/secrets/pgpool-users
- name: PGPOOL_PCP_USER
  value: {{ .Values.pgpool.pcpUser }}
- name: PGPOOL_PCP_PASSWORD_FILE
  value: /run/secrets/pgpool/pcp
- name: PGPOOL_PCP_PORT
  value: "9898"
- name: PGPOOL_FOLLOW_INTERVAL
  value: {{ .Values.pgpool.followInterval | quote }}
{{- end -}}

{{/* The volumes of the pgpool and pgpool-follow containers. */}}
{{- define "pglease.pgpoolMounts" -}}
- name: pgpool-run
  mountPath: /run/pgpool
- name: pgpool-config
  mountPath: /etc/pgpool
  readOnly: true
- name: superuser-password
  mountPath: /run/secrets/pglease
  readOnly: true
- name: pcp-password
  mountPath: /run/secrets/pgpool
  readOnly: true
{{- if .Values.pgpool.usersSecret }}
- name: pgpool-users
  mountPath: /run/secrets/pgpool-users
  readOnly: true
{{- end }}
{{- end -}}
