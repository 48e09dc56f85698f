"""``/api/cluster/software/packages`` records."""

from __future__ import annotations

from typing import Any

from swdepot.api.views.ontap import iso, self_link
from swdepot.repository.catalog import PackageRecord

PACKAGES = "/api/cluster/software/packages"


def package_record(record: PackageRecord) -> dict[str, Any]:
    """``software_package`` as ONTAP shows it, plus swdepot's extra fields."""
    return {
        "version": record.version,
        "create_time": iso(record.create_time),
        "file_name": record.file_name,
        "kind": str(record.kind),
        "size": record.size,
        "sha256": record.sha256,
        "product": record.product,
        "signer": record.signer,
        "_links": self_link(f"{PACKAGES}/{record.version}"),
    }
