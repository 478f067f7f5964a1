"""The Kibana saved objects ispmon ships: data views, visualizations and three dashboards.

Generated here, from one table of field names per index family, so that ids, references and
fields stay consistent; the ndjson files in `search/kibana/` (and `kibana/` at the top of the
repository, symlinks to them) are this module's output for the default prefix `isp`, and a test
checks they still are. Regenerate them with `python -m ispmon.search.kibana_objects --write`.
`ispmon kibana-import --prefix X` builds the same objects for another prefix (several
installations on one cluster): ids and data view titles then carry that prefix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ispmon.search.kibana_boards import (
    customer_usage,
    data_view,
    network_performance,
    service_availability,
    system_logs_search,
)
from ispmon.search.kibana_fields import DATA_VIEWS
from ispmon.search.kibana_vis import Ids

SHIPPED_DIR = Path(__file__).resolve().parent / "kibana"


def build(prefix: str = "isp") -> dict[str, list[dict[str, Any]]]:
    """File name -> saved objects. Each dashboard's file holds its data views and visualizations
    (it imports on its own); the data-views file holds every data view, also the system logs',
    and a Discover search of the system logs."""
    ids = Ids(prefix)
    return {
        "ispmon-data-views.ndjson": [*(data_view(ids, k) for k in DATA_VIEWS), system_logs_search(ids)],
        "ispmon-service-availability.ndjson": service_availability(ids),
        "ispmon-network-performance.ndjson": network_performance(ids),
        "ispmon-customer-usage.ndjson": customer_usage(ids),
    }


def render(objects: list[dict[str, Any]]) -> str:
    """ndjson as Kibana's export writes it: one object per line, keys sorted, a final newline."""
    return "".join(
        json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n" for obj in objects
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print or (re)write the shipped Kibana ndjson files.")
    parser.add_argument("--write", action="store_true", help=f"write the files into {SHIPPED_DIR}")
    parser.add_argument("--prefix", default="isp", help="index prefix (default isp)")
    args = parser.parse_args(argv)
    files = build(args.prefix)
    if args.write:
        SHIPPED_DIR.mkdir(exist_ok=True)
        for name, objects in files.items():
            (SHIPPED_DIR / name).write_text(render(objects), encoding="utf-8")
    else:
        for objects in files.values():
            print(render(objects), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
