"""Not an app: the module tests/e2e/apps/helper_template.py imports, which gives the document its page."""

from bokeh.io import curdoc
from jinja2 import Template

PAGE = Template("""{% extends base %}
{% block contents %}<h1 id="banner">{{ banner }}</h1>{{ super() }}{% endblock %}""")


def use_banner_page(text: str) -> None:
    doc = curdoc()
    doc.template = PAGE
    doc.template_variables["banner"] = text
