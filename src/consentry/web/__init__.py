"""The web pages: the account holder's settings page and the operator's dashboard.

Server-rendered (Jinja2) with a small script of our own for in-place saves; charts are SVG drawn on the
server; every asset is served by Consentry under ``/static/``. ``security`` holds the session cookie and
the protection against cross-site request forgery, ``service`` the dashboard's queries, ``charts`` the
SVG charts and ``router`` the routes.
"""
