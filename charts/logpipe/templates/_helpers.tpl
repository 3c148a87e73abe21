{{/* Names, labels and the pieces every pod shares: one definition each. */}}

{{- define "logpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "logpipe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "logpipe.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "logpipe.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", e.g. logpipe-ingest. Call with (list $ "ingest"). */}}
{{- define "logpipe.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "logpipe.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "logpipe.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "logpipe.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "logpipe.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
{{ include "logpipe.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: logpipe
{{- end -}}

{{- define "logpipe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "logpipe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret key of each backend's credential, generated or in secrets.existingSecret. */}}
{{- define "logpipe.secretKey" -}}
{{- get (dict "clickhouse" "clickhouse-password" "qdrant" "qdrant-api-key" "postgresql" "postgres-password" "redis" "redis-password") . -}}
{{- end -}}

{{- define "logpipe.secretName" -}}
{{- default (printf "%s-credentials" .Release.Name) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* The component's image: its own block overrides the chart-wide one key by key. */}}
{{- define "logpipe.image" -}}
{{- $root := index . 0 -}}
{{- $image := merge (dict) (index . 1).image $root.Values.image -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{- define "logpipe.pullPolicy" -}}
{{- $root := index . 0 -}}
{{- $image := merge (dict) (index . 1).image $root.Values.image -}}
{{- $image.pullPolicy -}}
{{- end -}}

{{/* PodSecurity "restricted", for every pod of the chart (one helper, not copies). */}}
{{- define "logpipe.podSecurityContext" -}}
{{- $user := .user | default .root.Values.securityContext.runAsUser -}}
{{- $group := .group | default .root.Values.securityContext.runAsGroup -}}
runAsNonRoot: true
runAsUser: {{ $user }}
runAsGroup: {{ $group }}
fsGroup: {{ $group }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "logpipe.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Addresses and credentials every service reads (see services/logpipe/core/settings.py). */}}
{{- define "logpipe.commonEnv" -}}
{{- $root := . -}}
- name: LOGPIPE_DATA_DIR
  value: /data
- name: LOGPIPE_PIPELINE
  value: {{ .Values.config.pipeline | quote }}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: LOG_FORMAT
  value: json
{{- /* Services listen beyond loopback here, so their state-changing routes ask for a token:
     this one is what they send each other (logpipe.tokens.ServiceGuard). */}}
- name: LOGPIPE_SERVICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "logpipe.secretName" $root }}
      key: service-token
{{- /* Credentials first: Kubernetes expands $(VAR) only from variables defined earlier. */}}
{{- range $variable, $backend := dict "CLICKHOUSE_PASSWORD" "clickhouse" "QDRANT_API_KEY" "qdrant" "DATABASE_PASSWORD" "postgresql" "REDIS_PASSWORD" "redis" }}
{{- if or (index $root.Values $backend).enabled $root.Values.secrets.existingSecret }}
- name: {{ $variable }}
  valueFrom:
    secretKeyRef:
      name: {{ include "logpipe.secretName" $root }}
      key: {{ include "logpipe.secretKey" $backend }}
      # An existing Secret holds only the keys of the backends it is used with.
      optional: {{ not (index $root.Values $backend).enabled }}
{{- end }}
{{- end }}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ include "logpipe.kafkaBootstrap" . | quote }}
- name: CLICKHOUSE_URL
  value: {{ include "logpipe.clickhouseUrl" . | quote }}
- name: CLICKHOUSE_DATABASE
  value: {{ .Values.config.clickhouse.database | quote }}
- name: QDRANT_URL
  value: {{ include "logpipe.qdrantUrl" . | quote }}
- name: QDRANT_COLLECTION
  value: {{ .Values.config.qdrant.collection | quote }}
- name: LOG_TTL_DAYS
  value: {{ .Values.config.logTtlDays | quote }}
{{- with (include "logpipe.databaseUrl" .) }}
- name: DATABASE_URL
  value: {{ . | quote }}
{{- end }}
{{- with (include "logpipe.redisUrl" .) }}
- name: REDIS_URL
  value: {{ . | quote }}
{{- end }}
{{- with (include "logpipe.teiUrl" .) }}
- name: EMBEDDER_TEI_URL
  value: {{ . | quote }}
{{- end }}
{{- with (include "logpipe.ollamaHost" .) }}
- name: OLLAMA_HOST
  value: {{ . | quote }}
{{- end }}
{{- if .Values.tracing.enabled }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "tracing.endpoint is required when tracing.enabled" .Values.tracing.endpoint | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.tracing.samplingRatio | quote }}
{{- end }}
{{- end -}}

{{/* Each address: the value given, else the Service of the bundled dependency (Strimzi's
     "<cluster>-kafka-bootstrap", the Bitnami/Qdrant charts' "<release>-<chart>"); Redis, SQL,
     TEI and Ollama are left unset (in-process cache, SQLite, local model, no LLM) unless given
     or enabled. */}}
{{- define "logpipe.kafkaBootstrap" -}}
{{- if .Values.config.kafka.bootstrapServers -}}
{{- .Values.config.kafka.bootstrapServers -}}
{{- else if .Values.devBroker.enabled -}}
{{- printf "%s:9092" (include "logpipe.componentName" (list . "broker")) -}}
{{- else -}}
{{- printf "%s-kafka-bootstrap:9092" (include "logpipe.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "logpipe.clickhouseUrl" -}}
{{- if .Values.config.clickhouse.url -}}
{{- .Values.config.clickhouse.url -}}
{{- else -}}
{{- printf "http://logpipe:$(CLICKHOUSE_PASSWORD)@%s:8123" (include "logpipe.componentName" (list . "clickhouse")) -}}
{{- end -}}
{{- end -}}

{{- define "logpipe.qdrantUrl" -}}
{{- if .Values.config.qdrant.url -}}
{{- .Values.config.qdrant.url -}}
{{- else -}}
{{- printf "http://%s:6333" (include "logpipe.componentName" (list . "qdrant")) -}}
{{- end -}}
{{- end -}}

{{- define "logpipe.databaseUrl" -}}
{{- if .Values.config.database.url -}}
{{- .Values.config.database.url -}}
{{- else if .Values.postgresql.enabled -}}
{{- printf "postgresql+psycopg://logpipe:$(DATABASE_PASSWORD)@%s:5432/logpipe" (include "logpipe.componentName" (list . "postgresql")) -}}
{{- end -}}
{{- end -}}

{{- define "logpipe.redisUrl" -}}
{{- if .Values.config.redis.url -}}
{{- .Values.config.redis.url -}}
{{- else if .Values.redis.enabled -}}
{{- printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "logpipe.componentName" (list . "redis")) -}}
{{- end -}}
{{- end -}}

{{- define "logpipe.teiUrl" -}}
{{- if .Values.config.embeddings.teiUrl -}}
{{- .Values.config.embeddings.teiUrl -}}
{{- else if .Values.textEmbeddingsInference.enabled -}}
{{- printf "http://%s:8080" (include "logpipe.componentName" (list . "tei")) -}}
{{- end -}}
{{- end -}}

{{- define "logpipe.ollamaHost" -}}
{{- if .Values.config.llm.ollamaHost -}}
{{- .Values.config.llm.ollamaHost -}}
{{- else if .Values.ollama.enabled -}}
{{- printf "http://%s:11434" (include "logpipe.componentName" (list . "ollama")) -}}
{{- end -}}
{{- end -}}
