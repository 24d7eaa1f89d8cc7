"""The web page at `/`: server-rendered (Jinja2) with a little plain JavaScript and CSS
from `static/`, signed in with a session cookie; plus the API docs (`/docs`, `/redoc`)
served from vendored files, so both work offline.

`exportd.api.web.site.install(app)` mounts it all. This module imports nothing, so
`exportd.api.auth` can use `exportd.api.web.sessions` without a cycle."""
