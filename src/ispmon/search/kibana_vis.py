"""Builders for Kibana's aggregation-based ("legacy") visualization saved objects.

Pure functions returning plain dicts, used by `kibana_objects` to generate the shipped ndjson.
Aggregation-based visualizations rather than Lens: their `visState` names every field in
`aggs[].params.field`, so a test can check each one against our index templates, and Kibana 8.x
and 9.x import and render them unchanged (Lens state would tie the files to one Lens version).
The shapes follow what Kibana 8.14 exports: `visState` and `searchSourceJSON` are JSON strings,
the data view is a reference named `kibanaSavedObjectMeta.searchSourceJSON.index`.
"""

from __future__ import annotations

import json
from typing import Any

# What a real Kibana 8.14 export carries (FIELD-NOTES): core 8.8.0 and each type's last model
# version. Import accepts these on 8.14+ and on 9.x (an older version is migrated on import).
CORE_MIGRATION_VERSION = "8.8.0"
TYPE_MIGRATION_VERSIONS = {
    "dashboard": "10.2.0",
    "visualization": "8.5.0",
    "index-pattern": "8.0.0",
    "search": "10.3.0",
}
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


def dumps(value: Any) -> str:
    """Compact, stable JSON for the stringified attributes (the files are compared byte for byte)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=False, ensure_ascii=False)


def agg(agg_id: str, agg_type: str, schema: str, **params: Any) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": agg_type, "params": params, "schema": schema}


def count(agg_id: str = "1", label: str | None = None) -> dict[str, Any]:
    return agg(agg_id, "count", "metric", **({"customLabel": label} if label else {}))


def metric(agg_id: str, agg_type: str, field: str, label: str) -> dict[str, Any]:
    """avg / sum / min / max / cardinality of one field, as a metric column or series."""
    return agg(agg_id, agg_type, "metric", field=field, customLabel=label)


def top_hit(agg_id: str, field: str, label: str, sort_field: str = "@timestamp") -> dict[str, Any]:
    """The field's value in the newest document of the bucket (a table column)."""
    return agg(
        agg_id,
        "top_hits",
        "metric",
        field=field,
        aggregate="concat",
        size=1,
        sortField=sort_field,
        sortOrder="desc",
        customLabel=label,
    )


def terms(
    agg_id: str, schema: str, field: str, label: str, size: int = 10, order_by: str = "1", order: str = "desc"
) -> dict[str, Any]:
    return agg(
        agg_id,
        "terms",
        schema,
        field=field,
        orderBy=order_by,
        order=order,
        size=size,
        otherBucket=False,
        otherBucketLabel="Other",
        missingBucket=False,
        missingBucketLabel="Missing",
        customLabel=label,
    )


def date_histogram(agg_id: str, field: str = "@timestamp") -> dict[str, Any]:
    return agg(
        agg_id,
        "date_histogram",
        "segment",
        field=field,
        useNormalizedEsInterval=True,
        scaleMetricValues=False,
        interval="auto",
        drop_partials=False,
        min_doc_count=1,
        extended_bounds={},
    )


def filters(agg_id: str, schema: str, named_queries: list[tuple[str, str]]) -> dict[str, Any]:
    """One bucket per (label, KQL query)."""
    return agg(
        agg_id,
        "filters",
        schema,
        filters=[
            {"input": {"query": query, "language": "kuery"}, "label": label} for label, query in named_queries
        ],
    )


def pie_state(title: str, aggs: list[dict[str, Any]], donut: bool = True) -> dict[str, Any]:
    return {
        "title": title,
        "type": "pie",
        "aggs": aggs,
        "params": {
            "type": "pie",
            "addTooltip": True,
            "legendDisplay": "show",
            "legendPosition": "right",
            "isDonut": donut,
            "labels": {"show": True, "values": True, "last_level": True, "truncate": 100},
            "palette": {"type": "palette", "name": "kibana_palette"},
            "distinctColors": True,
            "nestedLegend": False,
            "truncateLegend": True,
            "maxLegendLines": 1,
            "emptySizeRatio": 0.3,
        },
    }


def metric_state(title: str, aggs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "title": title,
        "type": "metric",
        "aggs": aggs,
        "params": {
            "type": "metric",
            "addTooltip": True,
            "addLegend": False,
            "metric": {
                "percentageMode": False,
                "useRanges": False,
                "colorSchema": "Green to Red",
                "metricColorMode": "None",
                "colorsRange": [{"from": 0, "to": 10000}],
                "labels": {"show": True},
                "invertColors": False,
                "style": {
                    "bgFill": "#000",
                    "bgColor": False,
                    "labelColor": False,
                    "subText": "",
                    "fontSize": 60,
                },
            },
        },
    }


def table_state(title: str, aggs: list[dict[str, Any]], per_page: int = 10) -> dict[str, Any]:
    return {
        "title": title,
        "type": "table",
        "aggs": aggs,
        "params": {
            "perPage": per_page,
            "showPartialRows": False,
            "showMetricsAtAllLevels": False,
            "sort": {"columnIndex": None, "direction": None},
            "showTotal": False,
            "totalFunc": "sum",
            "percentageCol": "",
            "showToolbar": True,
        },
    }


def xy_state(title: str, kind: str, aggs: list[dict[str, Any]], y_title: str) -> dict[str, Any]:
    """line / area / histogram over a date histogram; one series per metric agg. Areas and bars
    stack (statuses and severities add up to all checks / outages); lines do not."""
    stacked = kind in ("area", "histogram")
    series = [
        {
            "show": True,
            "type": kind,
            "mode": "stacked" if stacked else "normal",
            "data": {"label": a["params"].get("customLabel", a["type"]), "id": a["id"]},
            "valueAxis": "ValueAxis-1",
            "drawLinesBetweenPoints": True,
            "lineWidth": 2,
            "interpolate": "linear",
            "showCircles": kind == "line",
        }
        for a in aggs
        if a["schema"] == "metric"
    ]
    return {
        "title": title,
        "type": kind,
        "aggs": aggs,
        "params": {
            "type": kind,
            "grid": {"categoryLines": False},
            "categoryAxes": [
                {
                    "id": "CategoryAxis-1",
                    "type": "category",
                    "position": "bottom",
                    "show": True,
                    "style": {},
                    "scale": {"type": "linear"},
                    "labels": {"show": True, "filter": True, "truncate": 100},
                    "title": {},
                }
            ],
            "valueAxes": [
                {
                    "id": "ValueAxis-1",
                    "name": "LeftAxis-1",
                    "type": "value",
                    "position": "left",
                    "show": True,
                    "style": {},
                    "scale": {"type": "linear", "mode": "normal"},
                    "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                    "title": {"text": y_title},
                }
            ],
            "seriesParams": series,
            "addTooltip": True,
            "legendPosition": "right",
            "times": [],
            "addTimeMarker": False,
            "truncateLegend": True,
            "maxLegendLines": 1,
            "labels": {},
            "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
            "palette": {"type": "palette", "name": "kibana_palette"},
        },
    }


def visualization(
    object_id: str, vis_state: dict[str, Any], data_view_id: str, query: str = "", description: str = ""
) -> dict[str, Any]:
    """A visualization saved object on one data view, with an optional KQL query of its own."""
    search_source = {
        "query": {"query": query, "language": "kuery"},
        "filter": [],
        "indexRefName": INDEX_REF,
    }
    return saved_object(
        "visualization",
        object_id,
        {
            "title": vis_state["title"],
            "description": description,
            "uiStateJSON": "{}",
            "version": 1,
            "visState": dumps(vis_state),
            "kibanaSavedObjectMeta": {"searchSourceJSON": dumps(search_source)},
        },
        [{"type": "index-pattern", "id": data_view_id, "name": INDEX_REF}],
    )


def saved_search(
    object_id: str, title: str, data_view_id: str, columns: list[str], sort_field: str, description: str = ""
) -> dict[str, Any]:
    """A Discover saved search: the newest documents first, with these columns."""
    search_source = {"query": {"query": "", "language": "kuery"}, "filter": [], "indexRefName": INDEX_REF}
    return saved_object(
        "search",
        object_id,
        {
            "title": title,
            "description": description,
            "columns": columns,
            "sort": [[sort_field, "desc"]],
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": dumps(search_source)},
        },
        [{"type": "index-pattern", "id": data_view_id, "name": INDEX_REF}],
    )


def saved_object(
    object_type: str, object_id: str, attributes: dict[str, Any], references: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "type": object_type,
        "id": object_id,
        "attributes": attributes,
        "references": references,
        "managed": False,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS[object_type],
    }


GRID_COLUMNS = 48  # Kibana's dashboard grid is 48 columns wide


class Ids:
    """Saved-object ids for one prefix: `ispmon-<prefix>-<name>`, stable across imports so a
    re-import (overwrite=true) replaces instead of duplicating."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, name: str) -> str:
        return f"ispmon-{self.prefix}-{name}"

    def local(self, object_id: str) -> str:
        """The id without `ispmon-<prefix>-`: a dashboard's panel index for that object."""
        return object_id.removeprefix(self(""))

    def data_view(self, key: str) -> str:
        return self(f"{key}-data-view")


def dashboard(
    ids: Ids, name: str, title: str, description: str, panels: list[tuple[dict[str, Any], int, int, int, int]]
) -> dict[str, Any]:
    """A dashboard of (visualization object, x, y, w, h) panels; panel `i` is the visualization
    id's last part, so references read `<panelIndex>:panel_<panelIndex>` as Kibana writes them."""
    panel_list = []
    references = []
    for obj, x, y, w, h in panels:
        index = ids.local(obj["id"])
        panel_list.append(
            {
                "type": obj["type"],
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": index},
                "panelIndex": index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{index}",
            }
        )
        references.append({"type": obj["type"], "id": obj["id"], "name": f"{index}:panel_{index}"})
    attributes = {
        "title": title,
        "description": description,
        "panelsJSON": dumps(panel_list),
        "optionsJSON": dumps(
            {
                "useMargins": True,
                "syncColors": False,
                "syncCursor": True,
                "syncTooltips": False,
                "hidePanelTitles": False,
            }
        ),
        "timeRestore": True,
        "timeFrom": "now-24h",
        "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60000},
        "kibanaSavedObjectMeta": {
            "searchSourceJSON": dumps({"query": {"query": "", "language": "kuery"}, "filter": []})
        },
        "version": 1,
    }
    return saved_object("dashboard", ids(name), attributes, references)
