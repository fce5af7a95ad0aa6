{{- define "tpl.helper" -}}helper sees {{ .Values.name }}{{- end -}}
