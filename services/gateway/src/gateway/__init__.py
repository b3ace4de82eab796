"""breakglass gateway: the only door the browser knows.

Auth, the HTTP API, the SSE attach stream and the PWA's files. It publishes
commands and reads events; it never holds an SSH key of any kind.
"""
