"""
Packaging for Disperse, a distributed cache on Twisted.

The twistd plugin lives in C{twisted/plugins/}, which must not become a
package of its own: installing a C{twisted/__init__.py} would shadow Twisted.
"""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="disperse",
    version="0.1.0",
    description="A distributed cache on Twisted: SWIM gossip, HTTP API, TTLs",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=[*find_packages(exclude=["tests*", "bench*"]), "twisted.plugins"],
    package_dir={"": "."},
    package_data={
        "disperse": ["py.typed"],
        # The dashboard's page, script and style sheet, served from memory.
        "disperse.web": ["ui/*.html", "ui/*.js", "ui/*.css"],
    },
    install_requires=[
        "twisted>=24.7",
        "klein>=24.8",
        "treq>=24.9",
        "msgpack>=1.0",
        "cryptography>=42",
        "xxhash>=3.0",
        "prometheus_client>=0.20",
        # The Redis front end's request parser.
        "hiredis>=3.0",
        # The append-only log's and snapshots' record checksums (CRC32C, in
        # hardware where the CPU has it).
        "crc32c>=2.4",
    ],
    entry_points={"console_scripts": ["disperse = disperse.cli.main:run"]},
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6.100",
            "mypy>=1.10",
            "mypy-zope>=1.0",
            "ruff>=0.6",
            # The fault bed's timeline plot is tested (and type-checked) in
            # the ordinary suite.
            "matplotlib>=3.6",
        ],
        # make browser: drives Debian's chromium through its chromedriver.
        "browser": ["selenium>=4.20"],
        # The fault bed's timeline plots (make testbed), and the Redis client
        # its counter test increments through.
        "testbed": ["matplotlib>=3.6", "redis>=5.0"],
        # make redis-clients: real, unmodified Redis clients against real
        # nodes (redis-cli comes from Debian's redis-tools).
        "redis-clients": ["redis[hiredis]>=5.0", "django>=4.2"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
    ],
)
