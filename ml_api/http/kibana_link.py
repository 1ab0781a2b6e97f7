"""The Kibana dashboard's address, opened on one experiment: its selector set to the
experiment and its time range from the experiment's start (kibana/saved_objects.py builds
the dashboard; the state travels in Kibana's rison-encoded `_g` and `_a` URL parameters).

The selector travels in the form Kibana 8.19 (docker-compose.yml's version) writes itself:
`_a=(controlGroupInput:(controls:!((id,order,grow,width,type,controlConfig:(...)))))`.
Kibana's dashboard app reads `_a` in
src/platform/plugins/shared/dashboard/public/dashboard_app/url/bwc/extract_control_group_state.ts;
there 8.19 also reads the older `controlGroupState.initialChildControlState` form, which
its own tests (extract_control_group_state.test.ts) name the 8.16 to 8.18 form, but only
through the controls plugin's deprecated serializeRuntimeState converter. The 8.19 form is
read as it is, and later versions still read it as their ">= 8.19 to < 9.4 state"."""
from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import quote

DASHBOARD_ID = "ml-api-overview"
CONTROL_ID = "experiment"  # the options-list control of the saved dashboard
DATA_VIEW_ID = "ml-api-requests"
_URL_SAFE = "(),:!'*-_.~"  # rison's own punctuation stays readable in the address


def rison_string(text: str) -> str:
    """A rison string literal: quoted, with ! and ' escaped by !."""
    return "'" + text.replace("!", "!!").replace("'", "!'") + "'"


def kibana_dashboard_url(kibana_url: str, experiment: str, since: str | None) -> str | None:
    """The dashboard's address opened on `experiment` from `since` (ISO 8601, the
    experiment's start; naive means UTC) to now; None without a Kibana address."""
    if not kibana_url:
        return None
    config = (f"(dataViewId:{rison_string(DATA_VIEW_ID)},fieldName:experiment,"
              f"title:Experiment,singleSelect:!t,selectedOptions:!({rison_string(experiment)}))")
    control = (f"(id:{CONTROL_ID},type:optionsListControl,order:0,grow:!t,width:medium,"
               f"controlConfig:{config})")
    start = "now-24h" if since is None else _utc(since)
    global_state = f"(time:(from:{rison_string(start)},to:now))"
    app_state = f"(controlGroupInput:(controls:!({control})))"
    return (f"{kibana_url.rstrip('/')}/app/dashboards#/view/{DASHBOARD_ID}"
            f"?_g={quote(global_state, safe=_URL_SAFE)}&_a={quote(app_state, safe=_URL_SAFE)}")


def _utc(moment: str) -> str:
    at = datetime.fromisoformat(moment)
    at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
