"""The client package's README (what `pip` shows for jobs-client) is the main README's section on the
client and CLI, word for word: one text to keep right, not two that drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_client_readme_is_the_readmes_section_on_the_client():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Python client and CLI\n")
    section = readme[start : readme.index("\n## ", start + 1) + 1]
    assert (ROOT / "client" / "README.md").read_text(encoding="utf-8") == section, (
        "client/README.md differs from README.md's section: copy the section over"
    )


def test_the_readmes_list_of_error_codes_names_every_code_the_api_answers_with():
    from shared.contract import ProblemCode

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("Errors are `application/problem+json`")
    listed = set(re.findall(r"`([a-z_]+)`", readme[start : readme.index("\n\n", start)]))
    missing = sorted(c.value for c in ProblemCode if c.value not in listed)
    assert not missing, f"README's list of error codes lacks {missing}"
