"""Tests for tests/debian_roots.py: the Debian mirror comes from the host's own apt sources."""

from __future__ import annotations

import pytest

from debian_roots import NoDebianMirror, debian_mirror

DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""

THIRD_PARTY = """\
Types: deb
URIs: https://vendor.example/node_20.x
Suites: nodistro
Components: main
"""


def sources(tmp_path, sources_list: str = "", **files: str) -> dict:
    listing = tmp_path / "sources.list"
    listing.write_text(sources_list)
    directory = tmp_path / "sources.list.d"
    directory.mkdir()
    for name, text in files.items():
        (directory / name.replace("_", ".", 1)).write_text(text)
    return {"sources_list": listing, "sources_dir": directory}


def test_deb822_sources_name_the_release_archive(tmp_path):
    """The archive serving the host's codename itself, not -security, and not a third party's suite."""
    found = sources(tmp_path, **{"a-vendor_sources": THIRD_PARTY, "debian_sources": DEB822})
    assert debian_mirror("bookworm", **found) == "http://mirror.example/debian"


def test_one_line_sources_with_options(tmp_path):
    found = sources(tmp_path, "# deb http://old.example/debian bookworm main\n"
                              "deb http://mirror.example/debian-security bookworm-security main\n"
                              "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n")
    assert debian_mirror("bookworm", **found) == "http://mirror.example/debian"


def test_disabled_files_and_stanzas_are_ignored(tmp_path):
    found = sources(tmp_path, **{"debian_sources.disabled": DEB822,
                                 "off_sources": DEB822.replace("Types: deb\n", "Types: deb\nEnabled: no\n", 1)})
    with pytest.raises(NoDebianMirror, match="'bookworm main'"):
        debian_mirror("bookworm", **found)
