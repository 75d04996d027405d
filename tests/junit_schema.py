"""junit-10.xsd, and the same schema with the two relaxations the readers people use need.

junit-10.xsd is the schema pytest validates its own ``--junitxml`` output
against (tests/schemas/, copied from pytest's testing/example_scripts/junit-10.xsd).
Where that schema and the readers people use disagree, the readers win, and
:data:`READERS` is that schema with exactly these two relaxations and no others:

- the ``<error>`` element: junit-10.xsd names it ``<errors>``, but Jenkins'
  JUnit plugin and GitLab (docs: "Unit test reports", JUnit XML format
  specification) read ``<error>``, and pytest itself writes ``<error>``;
- the testcase's ``file`` attribute: not in junit-10.xsd, GitLab shows it as the
  file a test is defined in.
"""

from __future__ import annotations

import re
from pathlib import Path

import xmlschema

SCHEMAS = Path(__file__).parent / "schemas"
JUNIT_10 = (SCHEMAS / "junit-10.xsd").read_text()

# The relaxations, each an exact edit of the schema's text.
ERROR_ELEMENT = (
    '<xs:element ref="errors"/>',
    '<xs:element ref="errors"/>\n                    <xs:element name="error" type="readerError"/>',
)
ERROR_TYPE = (
    '<xs:element name="errors">',
    '<xs:complexType name="readerError" mixed="true">\n'
    '        <xs:attribute name="type" type="xs:string"/>\n'
    '        <xs:attribute name="message" type="xs:string"/>\n'
    "    </xs:complexType>\n\n"
    '    <xs:element name="errors">',
)
FILE_ATTRIBUTE = (
    '<xs:attribute name="group" type="xs:string"/>\n        </xs:complexType>\n    </xs:element>\n\n'
    '    <xs:element name="testsuite">',
    '<xs:attribute name="group" type="xs:string"/>\n'
    '            <xs:attribute name="file" type="xs:string"/>\n'
    "        </xs:complexType>\n    </xs:element>\n\n"
    '    <xs:element name="testsuite">',
)


def relaxed(text: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert text.count(old) == 1, f"the schema changed: {old!r} is not in it once"
        text = text.replace(old, new)
    return text


STRICT = xmlschema.XMLSchema(JUNIT_10)
READERS = xmlschema.XMLSchema(relaxed(JUNIT_10, ERROR_TYPE, ERROR_ELEMENT, FILE_ATTRIBUTE))


def schema_errors(schema: xmlschema.XMLSchema, document: str) -> list[str]:
    return [f"{error.path}: {error.reason}" for error in schema.iter_errors(document)]


# junit-10.xsd's complaints about the two relaxations, on a testcase and nowhere else.
RELAXED = re.compile(
    r"^/testsuites/testsuite/testcase(\[\d+\])?: "
    r"('file' attribute not allowed for element|Unexpected child with tag 'error' at position \d+\.)$"
)


def undocumented_errors(document: str) -> list[str]:
    """What junit-10.xsd itself rejects in ``document``, less the two documented relaxations."""
    return [e for e in schema_errors(STRICT, document) if not RELAXED.match(e)]


def assert_valid(document: str) -> None:
    """Valid for the readers, and junit-10.xsd rejects nothing but the two relaxations."""
    assert schema_errors(READERS, document) == []
    assert undocumented_errors(document) == []
