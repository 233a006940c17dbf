"""The dashboard's entry point: ``streamlit run dashboard/app.py``.

Reads the store named by RECO_DB (default data/reco.db) and nothing else; it
works whether or not the engine is running.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts only this folder on sys.path; the packages live one up.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard.settings import load_settings  # noqa: E402

VIEWS = Path(__file__).resolve().parent / "views"

# Viewers of a monitoring page need no deploy button or developer menu.
st.set_option("client.toolbarMode", "viewer")
st.set_page_config(
    page_title="Streaming recommender", page_icon=":material/monitoring:", layout="wide"
)
page = st.navigation(
    [
        st.Page(
            VIEWS / "live.py", title="Live", icon=":material/speed:", url_path="live", default=True
        ),
        st.Page(VIEWS / "model.py", title="Model", icon=":material/insights:", url_path="model"),
        st.Page(
            VIEWS / "online.py", title="Online", icon=":material/ads_click:", url_path="online"
        ),
        st.Page(
            VIEWS / "recommend.py",
            title="Recommend",
            icon=":material/recommend:",
            url_path="recommend",
        ),
        st.Page(
            VIEWS / "quality.py",
            title="Data quality",
            icon=":material/rule:",
            url_path="data-quality",
        ),
    ],
    position="top",
)
for problem in load_settings().problems:
    st.warning(problem, icon=":material/tune:")
page.run()
