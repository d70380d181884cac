"""The observations view (``/observations``): trail cameras as one plain HTML table, no script.

Per camera: its last photo, the last visit per taxon with the best photo's
thumbnail, and SILENT when it has sent nothing for longer than its
``silent_after``. The data comes from ``/api/observations`` (the ledger,
through a callable the cli wires).
"""

from __future__ import annotations

import time
from html import escape
from typing import Any


def _when(at: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(at))) if at else "-"


def render_observations(data: dict[str, Any]) -> str:
    rows = []
    for camera in data.get("cameras", []):
        last = camera.get("last_photo")
        if last:
            what = escape(f"{last['common_name']} ({last['taxon']}), {last['probability']:.0f}%"
                          if last.get("taxon") else "empty frame")
            last_text = f"{_when(last['taken'])}: {escape(str(last['file']))}: {what}"
        else:
            last_text = "no photo yet"
        visits = "".join(
            f"<li>{escape(str(v['label']))}: {v['frames']} photo(s), {_when(v['first_taken'])} to "
            f"{_when(v['last_taken'])}, best {float(v['best_probability']):.0f}%"
            f"{'' if v['alerted'] else ' (not alerted: quiet hours)'}"
            + (f"<br><img alt=\"best photo\" width=\"160\" src=\"{escape(v['thumbnail'])}\">" if v["thumbnail"] else "")
            + "</li>" for v in camera.get("visits", []))
        state = "SILENT" if camera.get("silent") else "ok"
        rows.append(f"<tr><td>{escape(str(camera['name']))}<br><small>{escape(str(camera['camera']))}</small></td>"
                    f"<td>{state}</td><td>{last_text}</td><td><ul>{visits or '<li>none</li>'}</ul></td></tr>")
    body = "".join(rows) or "<tr><td colspan=\"4\">no trail camera configured</td></tr>"
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Trail cameras</title></head>"
            "<body><h1>Trail cameras</h1><p><a href=\"/\">requests</a> · "
            "<a href=\"/api/observations\">JSON</a></p><table border=\"1\" cellpadding=\"4\">"
            "<thead><tr><th>camera</th><th>state</th><th>last photo</th><th>last visit per taxon</th></tr></thead>"
            f"<tbody>{body}</tbody></table></body></html>\n")
