"""Server-rendered pages: sign-in (OpenID Connect, or a development form) and the accept pages.

Installed on the API's Flask app by `web.site.install`; same shape as `api`: load -> call one
application method -> render, refusals mapped to pages in one place (`web.refusals`).
"""
