"""The `breakglass` command. It starts services as processes by module name
and never imports them, so the services stay independent of each other."""
