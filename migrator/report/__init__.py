"""The HTML assessment report: `migrator report --plan plan.yaml --output report.html`.

plan → figures (pure: breakdowns, readiness, concerns, estimates) → charts (matplotlib SVG)
→ one self-contained HTML file (Jinja2): no network fetches, opens from an email attachment.
"""
