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

{{/* The Secret the pods mount: the user's, else the one the chart makes. */}}
{{- define "pglease.secretName" -}}
{{- default (include "pglease.chartSecretName" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "pglease.chartSecretName" -}}
{{- default (include "pglease.fullname" .) .Values.secrets.name -}}
{{- end -}}

{{/* Labels every object carries (not used in selectors). */}}
{{- define "pglease.labels" -}}
{{- include "pglease.validate" . -}}
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
Whether lookup reaches a cluster: a list of the release namespace's Secrets
is a SecretList there (helm's own release records are Secrets, so whoever
installs can list them), and an empty map under `helm template`,
`--dry-run=client`, `helm lint` and GitOps tools that render with helm
template (Argo CD). "true" or "".
*/}}
{{- define "pglease.lookupWorks" -}}
{{- if lookup "v1" "Secret" .Release.Namespace "" -}}true{{- end -}}
{{- end -}}

{{/*
A password for the chart's Secrets: the value given, else the one already
stored (kept across upgrades), else a new random one -- but only where
lookup works: a password generated where the stored one cannot be read
would replace it at every render while PGDATA keeps the old one.
Call with (dict "root" $ "secret" NAME "key" KEY "value" VALUE "name" VALUE-KEY
"required" BOOL); "required" false lets a render without lookup generate
(the PCP password, which nothing outside the Pgpool-II pod keeps).
*/}}
{{- define "pglease.password" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- $stored := "" -}}
{{- if $existing -}}{{- $stored = index ($existing.data | default dict) .key | default "" -}}{{- end -}}
{{- if .value -}}
{{- .value | b64enc -}}
{{- else if $stored -}}
{{- $stored -}}
{{- else if and .required (not (include "pglease.lookupWorks" .root)) -}}
{{- fail (printf "%s is empty and helm cannot read the stored Secret %s here (helm template, --dry-run=client, Argo CD and other tools without lookup): a generated password would change at every render while PGDATA keeps the old one. Set secrets.existingSecret to a Secret you manage (keys %s, %s and %s: secrets.keys), or give secrets.superuserPassword, secrets.replicationPassword and secrets.rewindPassword" .name .secret .root.Values.secrets.keys.superuser .root.Values.secrets.keys.replication .root.Values.secrets.keys.rewind) -}}
{{- else if and .required .root.Release.IsUpgrade -}}
{{- fail (printf "%s is empty and the Secret %s has no key %s on this upgrade: PGDATA has the old password. Restore the Secret, or set secrets.existingSecret or %s" .name .secret .key .name) -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
The securityContext of every container: what Pod Security Admission's
"restricted" level requires, and a read-only root filesystem (every
directory a process writes is an emptyDir or the PVC).
*/}}
{{- define "pglease.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The pod securityContext of every pod: one UID, PSA restricted. */}}
{{- define "pglease.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The PostgreSQL pods' security context: the kubelet gives the data volume to
the fsGroup only when its root does not have it yet, not at every pod start
(slow on a large volume, and PGDATA left 2770, which PostgreSQL refuses).
Only there: the client is a bare Pod, whose spec helm upgrade cannot change.
*/}}
{{- define "pglease.postgresPodSecurityContext" -}}
{{ include "pglease.podSecurityContext" . }}
fsGroupChangePolicy: OnRootMismatch
{{- end -}}

{{/*
The StatefulSet's pod names up to postgres.maxReplicas: the Role lets the
agents patch these pods and no others. A JSON list.
*/}}
{{- define "pglease.podNames" -}}
{{- $sts := include "pglease.statefulsetName" . -}}
{{- $names := list -}}
{{- range $i := until (int .Values.postgres.maxReplicas) -}}
{{- $names = append $names (printf "%s-%d" $sts $i) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{- define "pglease.pgpoolServiceName" -}}
{{- default (printf "%s-pgpool" (include "pglease.fullname" .)) .Values.pgpool.service.name -}}
{{- end -}}

{{- define "pglease.clientName" -}}
{{- printf "%s-client" (include "pglease.fullname" .) -}}
{{- end -}}

{{- define "pglease.pgpoolNodePortName" -}}
{{- default (printf "%s-pgpool-nodeport" (include "pglease.fullname" .)) .Values.pgpool.nodePort.name -}}
{{- end -}}

{{/*
The rules that values.schema.json cannot say (they relate two keys), each
failing with the keys it names. Included by every template through
pglease.labels, so that any render checks them.
*/}}
{{- define "pglease.validate" -}}
{{- if ne (int .Values.config.pg_port) (int .Values.postgres.port) -}}
{{- fail (printf "config.pg_port (%v) must equal postgres.port (%v): the agent and the probes connect to config.pg_port, the Services and Pgpool-II to postgres.port" .Values.config.pg_port .Values.postgres.port) -}}
{{- end -}}
{{- if and .Values.pgpool.enabled (lt (int .Values.postgres.replicas) 1) -}}
{{- fail "postgres.replicas must be at least 1 while pgpool.enabled is true: Pgpool-II needs a backend" -}}
{{- end -}}
{{- if gt (int .Values.postgres.replicas) (int .Values.postgres.maxReplicas) -}}
{{- fail (printf "postgres.replicas (%v) exceeds postgres.maxReplicas (%v): the Role lets the agents patch only the first postgres.maxReplicas pods" .Values.postgres.replicas .Values.postgres.maxReplicas) -}}
{{- end -}}
{{- if and .Values.client.enabled (eq .Values.client.target "pgpool") (not .Values.pgpool.enabled) -}}
{{- fail "client.target is \"pgpool\" but pgpool.enabled is false: set client.target=primary" -}}
{{- end -}}
{{- $keys := .Values.secrets.keys -}}
{{- $keyNames := list $keys.superuser $keys.replication $keys.rewind $keys.failsafeToken -}}
{{- if ne (len (uniq $keyNames)) (len $keyNames) -}}
{{- fail (printf "secrets.keys must name four different keys of the Secret, got %s" (join ", " $keyNames)) -}}
{{- end -}}
{{- $grace := int .Values.postgres.terminationGracePeriodSeconds -}}
{{- if le $grace (int .Values.postgres.demoteTimeout) -}}
{{- fail (printf "postgres.terminationGracePeriodSeconds (%d) must exceed postgres.demoteTimeout (%v) plus config.stop_timeout: the kubelet kills the pod when it expires" $grace .Values.postgres.demoteTimeout) -}}
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
- name: PGLEASE_STATEFULSET
  value: {{ include "pglease.statefulsetName" . }}
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
- name: tmp
  mountPath: /tmp
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
- name: tmp
  mountPath: /tmp
{{- if .Values.pgpool.usersSecret }}
- name: pgpool-users
  mountPath: /run/secrets/pgpool-users
  readOnly: true
{{- end }}
{{- end -}}

{{/*
The port of config.http_listen (ADDRESS:PORT, "[::]:8008"): the agent
container's port "http", which its probes ask.
*/}}
{{- define "pglease.httpPort" -}}
{{- $listen := toString .Values.config.http_listen -}}
{{- if not (regexMatch ":[0-9]+$" $listen) -}}
{{- fail (printf "config.http_listen is %q: the chart's probes ask the agent's HTTP API, set it to ADDRESS:PORT such as [::]:8008" $listen) -}}
{{- end -}}
{{- regexReplaceAll "^.*:" $listen "" -}}
{{- end -}}

{{/* "true" when config.failsafe_mode is on, else empty. */}}
{{- define "pglease.failsafe" -}}
{{- if has (lower (toString .Values.config.failsafe_mode)) (list "yes" "on" "true" "1") -}}true{{- end -}}
{{- end -}}

{{/*
The port of config.failsafe_listen: the agent container's port "failsafe",
where the other members' POST /failsafe arrive.
*/}}
{{- define "pglease.failsafePort" -}}
{{- $listen := toString .Values.config.failsafe_listen -}}
{{- if not (regexMatch ":[0-9]+$" $listen) -}}
{{- fail (printf "config.failsafe_listen is %q: with config.failsafe_mode on, set it to ADDRESS:PORT such as [::]:8009" $listen) -}}
{{- end -}}
{{- regexReplaceAll "^.*:" $listen "" -}}
{{- end -}}
