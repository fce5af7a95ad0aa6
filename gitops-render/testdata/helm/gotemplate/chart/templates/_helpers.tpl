{{- define "gotemplate.name" -}}
{{ .Chart.Name }}-{{ .Release.Name }}
{{- end }}
{{- define "gotemplate.recurse" -}}
{{- if gt (int .n) 0 -}}{{ .n }},{{ include "gotemplate.recurse" (dict "n" (sub .n 1)) }}{{- end -}}
{{- end }}
{{ define "gotemplate.unused" }}never printed{{ end }}
