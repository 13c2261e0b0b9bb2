"""A stock django-oauth-toolkit client-credentials server: the reference ``manage.py bench --scenario token_issue``
measures the portal's token endpoint against (docs/design.md, "The token endpoint").

A separate, minimal Django project — only django-oauth-toolkit and the apps its tables need, no middleware, no
policies, an application with a plain (unhashed) client secret — in a database of its own. The scenario
(``devkit.bench.oauth_jwt``) creates that database, migrates it, serves this project with gunicorn exactly as it
serves the portal, drives both with the same load generator, and drops the database again.
"""
