{{/*
A component's NetworkPolicy: only the traffic the pipeline needs, plus networkPolicy.ingress /
networkPolicy.egress. Egress always allows DNS (and, for a dcgm-exporter streamer, the exporter
port). Call with (dict "root" $ "component" "collector").
*/}}
{{- define "telemetry-pipeline.networkPolicy" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $np := $root.Values.networkPolicy -}}
{{- $release := dict "app.kubernetes.io/name" (include "telemetry-pipeline.name" $root) "app.kubernetes.io/instance" $root.Release.Name -}}
{{- $selector := dict "root" $root -}}
{{- $ingress := list -}}
{{- if eq $component "api-gateway" -}}
{{- if $np.allowExternal -}}
{{- $ingress = append $ingress (dict "ports" (list (dict "port" "http" "protocol" "TCP"))) -}}
{{- else -}}
{{- $ingress = append $ingress (dict "from" (list (dict "podSelector" (dict "matchLabels" $release))) "ports" (list (dict "port" "http" "protocol" "TCP"))) -}}
{{- end -}}
{{- else if eq $component "mq" -}}
{{- $ingress = append $ingress (dict "from" (list (dict "podSelector" (dict "matchLabels" $release))) "ports" (list (dict "port" "amqp" "protocol" "TCP"))) -}}
{{- else if eq $component "database" -}}
{{- $from := list -}}
{{- range $client := list "collector" "api-gateway" "migrations" "history" -}}
{{- $from = append $from (dict "podSelector" (dict "matchLabels" (include "telemetry-pipeline.selectorLabels" (dict "root" $root "component" $client) | fromYaml))) -}}
{{- end -}}
{{- $ingress = append $ingress (dict "from" $from "ports" (list (dict "port" "postgresql" "protocol" "TCP"))) -}}
{{- end -}}
{{- $egress := list (dict "ports" (list (dict "port" 53 "protocol" "UDP") (dict "port" 53 "protocol" "TCP"))) -}}
{{- /* Egress to the bundled services, for the roles that hold their URL (see telemetry-pipeline.env). */ -}}
{{- if and (include "telemetry-pipeline.mq.bundled" $root) (has $component (list "streamer" "collector" "api-gateway")) -}}
{{- $egress = append $egress (dict "to" (list (dict "podSelector" (dict "matchLabels" (include "telemetry-pipeline.selectorLabels" (dict "root" $root "component" "mq") | fromYaml)))) "ports" (list (dict "port" 5672 "protocol" "TCP"))) -}}
{{- end -}}
{{- if and (include "telemetry-pipeline.database.bundled" $root) (has $component (list "collector" "api-gateway" "migrations" "history")) -}}
{{- $egress = append $egress (dict "to" (list (dict "podSelector" (dict "matchLabels" (include "telemetry-pipeline.selectorLabels" (dict "root" $root "component" "database") | fromYaml)))) "ports" (list (dict "port" 5432 "protocol" "TCP"))) -}}
{{- end -}}
{{- /* The streamer's node's dcgm-exporter: the node's IP is no pod, so the port on nodeCIDRs, or on any address. */ -}}
{{- if and (eq $component "streamer") (eq (include "telemetry-pipeline.streamer.dataSource" $root) "dcgm-exporter") -}}
{{- $e := $root.Values.streamer.dcgmExporter -}}
{{- $rule := dict "ports" (list (dict "port" (int $e.port) "protocol" "TCP")) -}}
{{- if $e.nodeCIDRs -}}
{{- $to := list -}}
{{- range $cidr := $e.nodeCIDRs -}}
{{- $to = append $to (dict "ipBlock" (dict "cidr" $cidr)) -}}
{{- end -}}
{{- $_ := set $rule "to" $to -}}
{{- end -}}
{{- $egress = append $egress $rule -}}
{{- end -}}
{{- if eq $component "test" -}}
{{- $egress = append $egress (dict "to" (list (dict "podSelector" (dict "matchLabels" (include "telemetry-pipeline.selectorLabels" (dict "root" $root "component" "api-gateway") | fromYaml)))) "ports" (list (dict "port" (int $root.Values.apiGateway.port) "protocol" "TCP"))) -}}
{{- end -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "telemetry-pipeline.componentName" (dict "root" $root "component" $component) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "telemetry-pipeline.labels" (dict "root" $root "component" $component) | nindent 4 }}
  {{- with include "telemetry-pipeline.annotations" (dict "root" $root) | trim }}{{ . | nindent 2 }}{{ end }}
spec:
  podSelector:
    matchLabels:
      {{- include "telemetry-pipeline.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
  policyTypes:
    {{- toYaml $np.policyTypes | nindent 4 }}
  {{- if has "Ingress" $np.policyTypes }}
  ingress:
    {{- toYaml (concat $ingress ($np.ingress | default list)) | nindent 4 }}
  {{- end }}
  {{- if has "Egress" $np.policyTypes }}
  egress:
    {{- toYaml (concat $egress ($np.egress | default list)) | nindent 4 }}
  {{- end }}
{{- end -}}
