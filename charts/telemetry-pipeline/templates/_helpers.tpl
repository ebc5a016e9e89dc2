{{/* Names, labels and shared fragments of the telemetry-pipeline chart. */}}

{{- define "telemetry-pipeline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-<chart>`, or the release name alone when it already contains the chart name. */}}
{{- define "telemetry-pipeline.fullname" -}}
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

{{/*
Name of a component's objects: fullname + suffix, kept within 63 characters (or "max": a
CronJob's name within 52, its Jobs adding 11).
*/}}
{{- define "telemetry-pipeline.componentName" -}}
{{- $full := include "telemetry-pipeline.fullname" .root -}}
{{- $max := .max | default 63 -}}
{{- printf "%s-%s" ($full | trunc (int (sub (sub $max 1) (len .component)))) .component | replace "--" "-" | trimSuffix "-" -}}
{{- end -}}

{{- define "telemetry-pipeline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "telemetry-pipeline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "telemetry-pipeline.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object; call with (dict "root" $ "component" "collector"). */}}
{{- define "telemetry-pipeline.labels" -}}
helm.sh/chart: {{ include "telemetry-pipeline.chart" .root }}
{{ include "telemetry-pipeline.selectorLabels" . }}
app.kubernetes.io/part-of: telemetry-pipeline
{{- if .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.annotations block for objects carrying commonAnnotations (plus extra ones). */}}
{{- define "telemetry-pipeline.annotations" -}}
{{- $all := merge (deepCopy (.extra | default dict)) (deepCopy (.root.Values.commonAnnotations | default dict)) -}}
{{- if $all }}
annotations:
  {{- toYaml $all | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Image reference of a pipeline component: component override, then the global image. */}}
{{- define "telemetry-pipeline.image" -}}
{{- $img := .root.Values.image -}}
{{- $own := .image | default dict -}}
{{- $repo := $own.repository | default $img.repository -}}
{{- $tag := $own.tag | default $img.tag | default .root.Chart.AppVersion -}}
{{- if and $img.digest (not $own.tag) (not $own.repository) -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString $tag) -}}
{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.imagePullPolicy" -}}
{{- (.image | default dict).pullPolicy | default .root.Values.image.pullPolicy -}}
{{- end -}}

{{- define "telemetry-pipeline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "telemetry-pipeline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* storageClassName line: "-" means an empty class (no dynamic provisioning), "" the cluster default. */}}
{{- define "telemetry-pipeline.storageClass" -}}
{{- if .storageClass -}}
{{- if eq "-" .storageClass }}
storageClassName: ""
{{- else }}
storageClassName: {{ .storageClass | quote }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* ---------- Which backing services exist ---------- */}}

{{- define "telemetry-pipeline.database.external" -}}
{{- if or .Values.database.external.url .Values.database.external.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The bundled PostgreSQL runs when enabled, not replaced, and someone uses it. */}}
{{- define "telemetry-pipeline.database.bundled" -}}
{{- if and .Values.database.enabled (not (include "telemetry-pipeline.database.external" .)) (or .Values.collector.enabled .Values.apiGateway.enabled) -}}true{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.database.available" -}}
{{- if or (include "telemetry-pipeline.database.external" .) (include "telemetry-pipeline.database.bundled" .) -}}true{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.database.urlSecretName" -}}
{{- if .Values.database.external.existingSecret -}}
{{- .Values.database.external.existingSecret -}}
{{- else if .Values.database.external.url -}}
{{- include "telemetry-pipeline.componentName" (dict "root" . "component" "external") -}}
{{- else -}}
{{- include "telemetry-pipeline.componentName" (dict "root" . "component" "postgresql") -}}
{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.database.urlSecretKey" -}}
{{- if .Values.database.external.existingSecret -}}
{{- .Values.database.external.existingSecretKey -}}
{{- else if .Values.database.external.url -}}
database-url
{{- else -}}
url
{{- end -}}
{{- end -}}

{{/*
history.* comes with the chart; `helm upgrade --reuse-values` from a release of a chart without it
keeps that chart's values, where it is missing. Say so rather than fail on a nil pointer.
*/}}
{{- define "telemetry-pipeline.history.required" -}}
{{- if not (kindIs "map" .Values.history) -}}
{{- fail "history.* values are missing: `helm upgrade --reuse-values` keeps the values of a chart that had none; use --reset-then-reuse-values (Helm 3.14+) or pass your values file" -}}
{{- end -}}
{{- end -}}

{{/* The history CronJob runs where the migration Job does: a database the release uses. */}}
{{- define "telemetry-pipeline.history.enabled" -}}
{{- include "telemetry-pipeline.history.required" . -}}
{{- if and .Values.history.enabled (include "telemetry-pipeline.database.available" .) (or .Values.collector.enabled .Values.apiGateway.enabled) -}}true{{- end -}}
{{- end -}}

{{/* A retention as NOTES.txt prints it: 0 keeps a tier for ever. */}}
{{- define "telemetry-pipeline.history.kept" -}}
{{- if eq (toString .) "0" -}}for ever{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.mq.external" -}}
{{- if or .Values.mq.external.url .Values.mq.external.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.mq.bundled" -}}
{{- if and .Values.mq.enabled (not (include "telemetry-pipeline.mq.external" .)) (or .Values.streamer.enabled .Values.collector.enabled .Values.apiGateway.enabled) -}}true{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.mq.available" -}}
{{- if or (include "telemetry-pipeline.mq.external" .) (include "telemetry-pipeline.mq.bundled" .) -}}true{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.mq.urlSecretName" -}}
{{- if .Values.mq.external.existingSecret -}}
{{- .Values.mq.external.existingSecret -}}
{{- else if .Values.mq.external.url -}}
{{- include "telemetry-pipeline.componentName" (dict "root" . "component" "external-mq") -}}
{{- else -}}
{{- include "telemetry-pipeline.componentName" (dict "root" . "component" "rabbitmq") -}}
{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.mq.urlSecretKey" -}}
{{- if .Values.mq.external.existingSecret -}}
{{- .Values.mq.external.existingSecretKey -}}
{{- else if .Values.mq.external.url -}}
broker-url
{{- else -}}
url
{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.appSecretName" -}}
{{- include "telemetry-pipeline.componentName" (dict "root" . "component" "app") -}}
{{- end -}}

{{/*
A secret value generated once: the value already stored in the cluster (lookup) when there is
one, a new random one otherwise (always with `helm template`, which has no cluster).
Call with (dict "namespace" ... "name" ... "key" ... "length" 32).
*/}}
{{- define "telemetry-pipeline.secretValue" -}}
{{- $existing := lookup "v1" "Secret" .namespace .name -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int (.length | default 32)) -}}
{{- end -}}
{{- end -}}

{{/* Fail early on combinations that cannot work. */}}
{{- define "telemetry-pipeline.validate" -}}
{{- include "telemetry-pipeline.history.required" . -}}
{{- if and (or .Values.collector.enabled .Values.apiGateway.enabled) (not (include "telemetry-pipeline.database.available" .)) -}}
{{- fail "collector and apiGateway need PostgreSQL: keep database.enabled=true or set database.external.url / database.external.existingSecret" -}}
{{- end -}}
{{- if and (or .Values.streamer.enabled .Values.collector.enabled .Values.apiGateway.enabled) (not (include "telemetry-pipeline.mq.available" .)) -}}
{{- fail "the pipeline needs RabbitMQ: keep mq.enabled=true or set mq.external.url / mq.external.existingSecret" -}}
{{- end -}}
{{- if and .Values.database.external.url .Values.database.external.existingSecret -}}
{{- fail "set only one of database.external.url and database.external.existingSecret" -}}
{{- end -}}
{{- if and .Values.mq.external.url .Values.mq.external.existingSecret -}}
{{- fail "set only one of mq.external.url and mq.external.existingSecret" -}}
{{- end -}}
{{- if gt (len .Values.streamer.csvData) 1000000 -}}
{{- fail "streamer.csvData is larger than a ConfigMap can hold (1 MiB): use streamer.persistence or streamer.existingConfigMap" -}}
{{- end -}}
{{- end -}}

{{/* ---------- Fragments shared by the pipeline's pods ---------- */}}

{{/*
Environment of a pipeline role: each gets only the connections and settings it uses. Call with
(dict "root" $ "database" true "broker" true):
  database   DATABASE_URL (collector, API gateway, migration Job, history CronJob,
             wait-for-migrations);
  broker     CELERY_BROKER_URL and CELERY_INGEST_QUEUE (streamer, collector, API gateway);
  history    COMPRESS_AFTER and COLLECTOR_MAX_ENTRIES_PER_GPU (collector, history CronJob): which
             readings are packed, and so which hours a late sample must unpack, and the per-GPU
             limit that trimming applies to packed and raw samples alike;
  retention  HISTORY_RAW_RETENTION, HISTORY_MINUTE_RETENTION, HISTORY_HOUR_RETENTION (history
             CronJob).
Every role gets logging, DEBUG, SECRET_KEY (Django needs it to start) and config.extraEnv. The
streamer has no database setting at all: without DATABASE_URL the settings name the local
development database, which `manage.py stream` never opens.
*/}}
{{- define "telemetry-pipeline.env" -}}
{{- $root := .root -}}
{{- if and .database (include "telemetry-pipeline.database.available" $root) }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "telemetry-pipeline.database.urlSecretName" $root }}
      key: {{ include "telemetry-pipeline.database.urlSecretKey" $root }}
{{- end }}
{{- if .broker }}
{{- if include "telemetry-pipeline.mq.available" $root }}
- name: CELERY_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "telemetry-pipeline.mq.urlSecretName" $root }}
      key: {{ include "telemetry-pipeline.mq.urlSecretKey" $root }}
{{- end }}
- name: CELERY_INGEST_QUEUE
  value: {{ $root.Values.config.ingestQueue | quote }}
{{- end }}
{{- if .history }}
{{- include "telemetry-pipeline.history.required" $root }}
- name: COMPRESS_AFTER
  value: {{ $root.Values.history.compressAfter | quote }}
- name: COLLECTOR_MAX_ENTRIES_PER_GPU
  value: {{ int64 $root.Values.collector.maxEntriesPerGPU | quote }}
{{- end }}
{{- if .retention }}
- name: HISTORY_RAW_RETENTION
  value: {{ $root.Values.history.rawRetention | toString | quote }}
- name: HISTORY_MINUTE_RETENTION
  value: {{ $root.Values.history.minuteRetention | toString | quote }}
- name: HISTORY_HOUR_RETENTION
  value: {{ $root.Values.history.hourRetention | toString | quote }}
{{- end }}
- name: LOG_LEVEL
  value: {{ $root.Values.config.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ $root.Values.config.logFormat | quote }}
- name: DEBUG
  value: {{ $root.Values.config.debug | ternary "true" "false" | quote }}
- name: SECRET_KEY
  valueFrom:
    secretKeyRef:
      {{- if $root.Values.config.existingSecret }}
      name: {{ $root.Values.config.existingSecret }}
      key: {{ $root.Values.config.existingSecretKey }}
      {{- else }}
      name: {{ include "telemetry-pipeline.appSecretName" $root }}
      key: secret-key
      {{- end }}
{{- with $root.Values.config.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The root filesystem is read-only: every pipeline container gets a writable /tmp. */}}
{{- define "telemetry-pipeline.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "telemetry-pipeline.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Init container that holds a pod until `manage.py migrate --check` reports nothing pending. */}}
{{- define "telemetry-pipeline.waitForMigrations" -}}
{{- if and .root.Values.migrations.enabled .root.Values.migrations.waitForMigrations (include "telemetry-pipeline.database.available" .root) }}
- name: wait-for-migrations
  image: {{ include "telemetry-pipeline.image" (dict "root" .root "image" .image) | quote }}
  imagePullPolicy: {{ include "telemetry-pipeline.imagePullPolicy" (dict "root" .root "image" .image) }}
  args:
    - wait-for-migrations
  env:
    {{- include "telemetry-pipeline.env" (dict "root" .root "database" true) | trim | nindent 4 }}
    - name: MIGRATIONS_WAIT_TIMEOUT
      value: "600"
  {{- with .securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml .root.Values.migrations.resources | nindent 4 }}
  volumeMounts:
    {{- include "telemetry-pipeline.tmpVolumeMount" . | nindent 4 }}
{{- end }}
{{- end -}}

{{/* Collector autoscaling, reading the seed README's mis-nested `mq.autoscaling` as a fallback. */}}
{{- define "telemetry-pipeline.collector.autoscaling" -}}
{{- $own := .Values.collector.autoscaling -}}
{{- $seed := .Values.mq.autoscaling | default dict -}}
{{- if and (not $own.enabled) $seed.enabled -}}
{{- toYaml (merge (deepCopy $seed) (deepCopy $own)) -}}
{{- else -}}
{{- toYaml $own -}}
{{- end -}}
{{- end -}}

{{/* Effective streamer partition: `node` or `none` (see README, "Streamer partition"). */}}
{{- define "telemetry-pipeline.streamer.partition" -}}
{{- $p := .Values.streamer.partition -}}
{{- if ne $p "auto" -}}
{{- $p -}}
{{- else if has .Values.streamer.source (list "nvml" "dcgm-exporter") -}}
none
{{- else if eq (include "telemetry-pipeline.streamer.dataSource" .) "bundled" -}}
none
{{- else -}}
node
{{- end -}}
{{- end -}}

{{/* Where the streamer's samples come from: nvml, dcgm-exporter, configmap (existing), pvc, inline (csvData) or bundled (the image's sample). */}}
{{- define "telemetry-pipeline.streamer.dataSource" -}}
{{- if eq .Values.streamer.source "nvml" -}}
nvml
{{- else if eq .Values.streamer.source "dcgm-exporter" -}}
dcgm-exporter
{{- else if .Values.streamer.existingConfigMap -}}
configmap
{{- else if .Values.streamer.persistence.enabled -}}
pvc
{{- else if .Values.streamer.csvData -}}
inline
{{- else -}}
bundled
{{- end -}}
{{- end -}}

{{/*
STREAM_SOURCE of the dcgm-exporter mode: the node's own exporter, `$(HOST_IP)` being the env var
HOST_IP (status.hostIP) that Kubernetes expands because it is defined earlier in the list.
*/}}
{{- define "telemetry-pipeline.streamer.exporterURL" -}}
{{- $e := .Values.streamer.dcgmExporter -}}
{{- printf "%s://$(HOST_IP):%d%s" $e.scheme (int $e.port) $e.path -}}
{{- end -}}

{{/*
A number for an env value: a whole number as an integer (Helm reads 15 in a values file as a
float, and 1000000 would print as 1e+06), anything else as given; so both int() and float()
parse it.
*/}}
{{- define "telemetry-pipeline.number" -}}
{{- $f := float64 . -}}
{{- if eq $f (float64 (int64 $f)) -}}
{{- int64 $f -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{- define "telemetry-pipeline.pdbSpec" -}}
{{- if not (kindIs "invalid" .minAvailable) }}
{{- if ne (toString .minAvailable) "" }}
minAvailable: {{ .minAvailable }}
{{- else }}
maxUnavailable: {{ .maxUnavailable }}
{{- end }}
{{- else }}
maxUnavailable: {{ .maxUnavailable }}
{{- end }}
{{- end -}}
