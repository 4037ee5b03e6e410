"""What the Acme vendor runs in its own CI: custodes' conformance suite on the sample volume, and the
driver's own expectations of it."""

from __future__ import annotations

from pathlib import Path

from custodes.findings import rfc3339
from custodes.testing.conformance import conformance_tests
from custodes.volumes import read_volume

SAMPLE = Path(__file__).parent / "sample" / "ACME-CAM"
OPTIONS = {"tz": "Asia/Shanghai"}  # the sample camera's clock shows China Standard Time

# One test per check of the driver contract (custodes.testing.conformance.CHECKS), by the registered name.
test_acme_keeps_the_driver_contract = conformance_tests("acme", SAMPLE, OPTIONS)


def test_acme_reads_its_sample() -> None:
    r = read_volume(SAMPLE, options=OPTIONS)
    assert (r.driver, r.identity.device_id, r.identity.officer_id) == ("acme", "AC1234567", "004711")
    assert [(s.name, rfc3339(s.start), s.sequence) for s in r.segments] == [
        ("DCIM/ACME_20240301180000_0001.MP4", "2024-03-01T10:00:00Z", 1),
        ("DCIM/ACME_20240301180010_0002.MP4", "2024-03-01T10:00:10Z", 2),
    ]
    assert [(rfc3339(e.time), e.kind, e.detail) for e in r.events] == [
        ("2024-03-01T10:00:05Z", "battery_low", "15%"),
        ("2024-03-01T10:00:13Z", "record_stop", ""),
    ]
    assert [(n.name, n.role) for n in r.non_recordings] == [
        ("ACME.ID", "identity"),
        ("ACME.LOG", "log"),
        ("DCIM/ACME_20240301180000_0001.THM", "thumbnail"),
    ]
    assert r.findings == []
