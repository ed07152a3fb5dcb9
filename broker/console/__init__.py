"""The built-in web console (issue 13): static pages (index.html, app.js, style.css, written
by the pages side) and the JSON views the pages read, served by the HTTP endpoint.

Python modules: ``api`` (the JSON views, computed on request), ``records`` (the record
browser's decoding), ``samplers`` (the only periodic work: per-topic rates and group lag),
``session`` (login when SASL or an authorizer is on), ``static`` (the files themselves).
"""
