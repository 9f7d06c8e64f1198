"""docsyncd: Bokeh applications served by a Twisted/Autobahn daemon."""

from setuptools import find_packages, setup

setup(
    name="docsyncd",
    version="0.1.0",
    description="Serve live Bokeh documents from a twistd plugin, synced with BokehJS over websockets",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks", "benchmarks.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/docsync_plugin.py"], "docsyncd": ["templates/*.html"]},
    install_requires=[
        "twisted>=23.10",
        "autobahn>=23.1",
        "numpy",
        "pyyaml",
        "service-identity",
        "pyopenssl",
        "orjson>=3.9",  # wire.py: the JSON of every message sent
        "bokeh>=3.4,<3.11",  # tested: 3.4.3, 3.9.2, 3.10 (README: Bokeh versions)
    ],
    extras_require={
        # Panel and HoloViz: the tested range (tests/e2e/test_panel.py; README "Panel and HoloViz apps").
        "test": ["pytest", "pytest-timeout", "hypothesis", "playwright", "bokeh-sampledata",
                 "panel>=1.9,<1.10", "holoviews>=1.23,<1.24", "hvplot>=0.12,<0.13"],
        "bench": ["psutil"],
    },
    entry_points={"console_scripts": ["docsync = docsyncd.cli:main"]},
)
