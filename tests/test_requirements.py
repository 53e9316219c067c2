"""The pinned requirements stay at or above the releases that fixed known advisories.

pip-audit runs in CI too, but it needs a vulnerability service this network may not
reach; this floor cannot be skipped.
"""

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

FLOOR = {
    "python-engineio": "4.13.3",
    "python-socketio": "5.16.3",
    "flask-socketio": "5.6.1",
    "flask": "3.1.3",
    "werkzeug": "3.1.9",
    "gevent": "25.4.1",
    "psycopg": "3.1.14",
}


def pins() -> dict[str, Version]:
    lines = (Path(__file__).parent.parent / "requirements.txt").read_text().splitlines()
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{req.name} is not pinned"
            found[req.name.lower()] = Version(spec.version)
    return found


@pytest.mark.parametrize("name,minimum", sorted(FLOOR.items()))
def test_pinned_at_or_above_the_fixed_release(name, minimum):
    assert pins()[name] >= Version(minimum)
